package integration

import (
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// defaultMetricsPort is the metrics listener's port when listen_addr does
// not name one.
const defaultMetricsPort = 3081

// exampleProxyConfig is what the packaging tests read of a proxy config,
// to hold the files around it (manifests, compose, units) to it.
type exampleProxyConfig struct {
	MetricsService struct {
		ListenAddr string   `toml:"listen_addr"`
		CACerts    []string `toml:"ca_certs"`
		Keypairs   []struct {
			CertFile string `toml:"cert_file"`
			KeyFile  string `toml:"key_file"`
		} `toml:"keypairs"`
		// OwnMetricsPath is nil when unset; "" turns the own metrics off.
		OwnMetricsPath *string `toml:"own_metrics_path"`
	} `toml:"metrics_service"`
	Upstream struct {
		URL         string `toml:"url"`
		MetricsPath string `toml:"metrics_path"`
	} `toml:"upstream"`
	Health struct {
		ListenAddr string `toml:"listen_addr"`
	} `toml:"health"`
	Diag struct {
		ListenAddr string `toml:"listen_addr"`
	} `toml:"diag"`
}

// parseExampleProxyConfig decodes the parts of a config the packaging
// tests look at; check, not this, judges the whole file.
func parseExampleProxyConfig(t testing.TB, text string) exampleProxyConfig {
	t.Helper()
	var c exampleProxyConfig
	if _, err := toml.Decode(text, &c); err != nil {
		t.Fatalf("parsing the proxy config: %v", err)
	}
	return c
}

// certFiles returns the CA and keypair files of a config, relative paths
// resolved against dir, the folder the config file is in where it runs.
func (c exampleProxyConfig) certFiles(dir string) []string {
	var files []string
	add := func(f string) {
		if !path.IsAbs(f) {
			f = path.Join(dir, f)
		}
		files = append(files, f)
	}
	for _, f := range c.MetricsService.CACerts {
		add(f)
	}
	for _, kp := range c.MetricsService.Keypairs {
		add(kp.CertFile)
		add(kp.KeyFile)
	}
	return files
}

// metricsPath is the path the proxy forwards to the daemon.
func (c exampleProxyConfig) metricsPath() string {
	if c.Upstream.MetricsPath == "" {
		return "/metrics"
	}
	return c.Upstream.MetricsPath
}

// ownMetricsPath is the path of the proxy's own metrics, "" when off.
func (c exampleProxyConfig) ownMetricsPath() string {
	if c.MetricsService.OwnMetricsPath == nil {
		return "/proxy/metrics"
	}
	return *c.MetricsService.OwnMetricsPath
}

// metricsPort is the metrics listener's port.
func (c exampleProxyConfig) metricsPort(t testing.TB) int {
	t.Helper()
	addr := c.MetricsService.ListenAddr
	if addr == "" || !strings.Contains(addr, ":") {
		return defaultMetricsPort
	}
	_, port := splitAddr(t, addr)
	return port
}

// upstreamHostPort returns the upstream's host:port, failing for a URL
// that is not http://host:port.
func (c exampleProxyConfig) upstreamHostPort(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(c.Upstream.URL)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		t.Fatalf("upstream url %q: want http://host:port (err %v)", c.Upstream.URL, err)
	}
	return u.Host
}

// splitAddr splits a host:port, failing the test for anything else.
func splitAddr(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: port: %v", addr, err)
	}
	return host, port
}

// isLoopbackAddr reports whether a host:port is on the loopback interface.
func isLoopbackAddr(t testing.TB, addr string) bool {
	t.Helper()
	host, _ := splitAddr(t, addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isWildcardAddr reports whether a host:port listens on every interface,
// as a listener that the kubelet or another host must reach has to.
func isWildcardAddr(t testing.TB, addr string) bool {
	t.Helper()
	host, _ := splitAddr(t, addr)
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// flagValue returns the value after a flag in an argument list ("--f v"
// or "--f=v"), or "".
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// underDir reports whether the slash path p lies inside the folder dir.
func underDir(p, dir string) bool {
	return strings.HasPrefix(path.Clean(p), strings.TrimSuffix(path.Clean(dir), "/")+"/")
}
