package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a throwaway CA with a server and a client keypair, written by the
// proxy's own dev-certs command. The server certificate is valid for
// localhost, 127.0.0.1 and ::1; the client's common name is prometheus.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// newPKI runs "mtls-metrics-proxy dev-certs" into a new temporary folder.
func newPKI(t testing.TB) pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	runToExit(t, proxyBin, "dev-certs", "--out", dir)
	return pki{
		ca:         filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
}

// runToExit runs a short command and fails the test unless it exits 0.
func runToExit(t testing.TB, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// proxyOptions are the settings a test varies in the proxy's config.
type proxyOptions struct {
	// upstream is [upstream] url.
	upstream string
	// shutdownTimeout is the grace period after SIGTERM; 0 means 15s.
	shutdownTimeout time.Duration
}

// proxyConfig returns a config for an mTLS metrics listener on a port
// that the kernel picks, logging JSON so that the test can read it.
func proxyConfig(k pki, o proxyOptions) string {
	grace := o.shutdownTimeout
	if grace == 0 {
		grace = 15 * time.Second
	}
	return fmt.Sprintf(`shutdown_timeout = %q

[metrics_service]
listen_addr = "127.0.0.1:0"
mtls = true
ca_certs = [%q]

[[metrics_service.keypairs]]
cert_file = %q
key_file = %q

[upstream]
url = %q

[log]
level = "debug"
format = "json"
`, grace.String(), k.ca, k.serverCert, k.serverKey, o.upstream)
}

// writeFile writes content to name in a new temporary folder and returns
// the file's path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("writing %s: %v", name, err)
	}
	return path
}

// proxyProc is a running mtls-metrics-proxy.
type proxyProc struct {
	*proc
	// addr is the metrics listener's host:port.
	addr string
}

// startProxy runs the proxy with the config from proxyConfig and waits
// until its metrics listener is open.
func startProxy(t testing.TB, k pki, o proxyOptions) *proxyProc {
	t.Helper()
	cfg := writeFile(t, "proxy.toml", proxyConfig(k, o))
	p := startProc(t, "mtls-metrics-proxy", proxyBin, "run", "--config", cfg)

	e := p.waitLog(t, "the metrics listener's address", func(e logEntry) bool {
		return e.str("@message") == "listening" && e.str("listener") == "metrics"
	})
	if e["tls"] != true || e["mtls"] != true {
		t.Fatalf("metrics listener is not mTLS: %v", e)
	}
	return &proxyProc{proc: p, addr: e.str("addr")}
}

// metricsURL is the URL Prometheus would scrape.
func (p *proxyProc) metricsURL() string { return "https://" + p.addr + "/metrics" }

// mtlsClient returns an HTTP client that trusts the test CA and presents
// the client certificate. It never uses a proxy from the environment.
func mtlsClient(t testing.TB, k pki) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(k.ca)
	if err != nil {
		t.Fatalf("reading CA: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", k.ca)
	}
	cert, err := tls.LoadX509KeyPair(k.clientCert, k.clientKey)
	if err != nil {
		t.Fatalf("loading client keypair: %v", err)
	}

	tr := &http.Transport{
		Proxy: nil,
		TLSClientConfig: &tls.Config{
			RootCAs:      roots,
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// plainClient returns a clear-text HTTP client that never uses a proxy.
func plainClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// scrapeResult is a response read to its end.
type scrapeResult struct {
	status int
	header http.Header
	body   string
	// gzipped reports that the body came gzip-encoded and the client
	// decoded it.
	gzipped bool
}

// scrape GETs url and reads the whole body.
func scrape(c *http.Client, url string) (scrapeResult, error) {
	resp, err := c.Get(url)
	if err != nil {
		return scrapeResult{}, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	res := scrapeResult{
		status:  resp.StatusCode,
		header:  resp.Header,
		body:    string(body),
		gzipped: resp.Uncompressed,
	}
	if err != nil {
		return res, fmt.Errorf("reading body of %s: %w", url, err)
	}
	return res, nil
}

// mustScrape is scrape that fails the test on a transport error.
func mustScrape(t testing.TB, c *http.Client, url string) scrapeResult {
	t.Helper()
	res, err := scrape(c, url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	return res
}
