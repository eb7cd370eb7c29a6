package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// DefaultMetricsPort is the metrics listener's port when listen_addr names
// none.
const DefaultMetricsPort = "3081"

// Config is the whole configuration file. Load fills it, applies the
// defaults and checks it; a Config from Load is ready to run.
type Config struct {
	// ShutdownTimeout bounds how long scrapes in flight may run on after
	// SIGTERM.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`

	// MetricsService is the mTLS metrics listener.
	MetricsService MetricsService `toml:"metrics_service"`
	// Upstream is the daemon's diag server.
	Upstream Upstream `toml:"upstream"`
	// Diag is the clear-text listener that takes over the daemon's old
	// diag address.
	Diag Diag `toml:"diag"`
	// Health is the clear-text listener for orchestrator probes.
	Health Health `toml:"health"`
	// Log sets the log level and format.
	Log Log `toml:"log"`

	// File is the configuration file's path, as given to Load.
	File string `toml:"-"`
	// Warnings are legal but doubtful settings, for the start-up log.
	Warnings []string `toml:"-"`

	lines keyLines
	sum   [sha256.Size]byte // of the file as loaded
}

// MetricsService is the [metrics_service] section.
type MetricsService struct {
	// Enabled turns the metrics listener on. It defaults to true when the
	// section is present and false when it is not; while it is off, the
	// diag listener forwards the metrics path as the daemon always did.
	Enabled bool `toml:"enabled"`
	// ListenAddr is host:port; a missing port means 3081.
	ListenAddr string `toml:"listen_addr"`
	// MTLS requires client certificates. It defaults to true; false serves
	// the metrics path in clear text to anyone, and says so in the log.
	MTLS bool `toml:"mtls"`
	// CACerts are PEM bundles of the CAs that client certificates must
	// chain to. Every certificate in every file is trusted.
	CACerts []string `toml:"ca_certs"`
	// Keypairs are the server certificates. The SNI picks one; without SNI
	// the one whose IP SANs hold the listener's address, else the first.
	Keypairs []Keypair `toml:"keypairs"`

	// OwnMetricsPath is where the proxy serves its own metrics, behind the
	// same mTLS and identity rules as the scrape path. Empty turns it off.
	OwnMetricsPath string `toml:"own_metrics_path"`

	// ClientAllowedSANs, ClientAllowedCommonNames and
	// ClientAllowedOrganizationalUnits narrow who may scrape among the
	// clients the CAs signed; any match allows. See policy.IdentityRules.
	ClientAllowedSANs                []string `toml:"client_allowed_sans"`
	ClientAllowedCommonNames         []string `toml:"client_allowed_common_names"`
	ClientAllowedOrganizationalUnits []string `toml:"client_allowed_organizational_units"`

	// MinVersion and MaxVersion are TLS12 or TLS13.
	MinVersion string `toml:"min_version"`
	MaxVersion string `toml:"max_version"`
	// CipherSuites limits the TLS 1.2 suites, by Go's names.
	CipherSuites []string `toml:"cipher_suites"`
	// CurvePreferences limits the key exchanges, by Go's names.
	CurvePreferences []string `toml:"curve_preferences"`
	// CRLFiles are revocation lists (PEM or DER), each signed by a CA in
	// ca_certs.
	CRLFiles []string `toml:"crl_files"`

	// ReloadInterval is how often the certificate files are checked for
	// changes when no file event arrives.
	ReloadInterval Duration `toml:"reload_interval"`
	// ExpiryWarning is how long before a certificate expires the log
	// starts warning about it.
	ExpiryWarning Duration `toml:"expiry_warning"`

	// TLS holds the parsed TLS settings.
	TLS TLSSettings `toml:"-"`

	// MaxConnections bounds the connections open at once on the metrics
	// listener, handshakes included; more are closed at once.
	MaxConnections int `toml:"max_connections"`

	// HandshakeTimeout bounds a TLS handshake.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request. Keep it above the scrape interval so that scrapes
	// reuse connections.
	IdleTimeout Duration `toml:"idle_timeout"`
}

// TLSSettings are the metrics service's TLS and identity settings, parsed.
type TLSSettings struct {
	MinVersion, MaxVersion uint16
	CipherSuites           []uint16
	Curves                 []tls.CurveID
	Identity               *policy.Identity
}

// Keypair is one [[metrics_service.keypairs]] entry.
type Keypair struct {
	// CertFile holds the certificate, then any intermediates, in PEM.
	CertFile string `toml:"cert_file"`
	// KeyFile holds the unencrypted private key in PEM.
	KeyFile string `toml:"key_file"`
}

// Upstream is the [upstream] section.
type Upstream struct {
	// URL is http://host:port or unix:///path/to.sock.
	URL string `toml:"url"`
	// MetricsPath is the daemon's metrics path, and the one path the
	// metrics listener serves.
	MetricsPath string `toml:"metrics_path"`
	// AllowRemote permits an upstream that is not loopback or a socket.
	AllowRemote bool `toml:"allow_remote"`
	// Timeout bounds a scrape that carries no scrape-timeout header.
	Timeout Duration `toml:"timeout"`
	// MaxTimeout caps the timeout a scraper may ask for.
	MaxTimeout Duration `toml:"max_timeout"`

	// Address is URL, parsed.
	Address upstream.Address `toml:"-"`
}

// Diag is the [diag] section.
type Diag struct {
	// ListenAddr is host:port. Empty means no diag listener.
	ListenAddr string `toml:"listen_addr"`
	// KeepMetrics serves the metrics path here too while the metrics
	// service is enabled: a bridge while Prometheus moves to the new job.
	KeepMetrics bool `toml:"keep_metrics"`
}

// Health is the [health] section.
type Health struct {
	// ListenAddr is host:port. Empty means no health listener.
	ListenAddr string `toml:"listen_addr"`
}

// Log is the [log] section.
type Log struct {
	// Level is trace, debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text or json.
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a string such as "10s". A bare
// number is refused: TOML integers would otherwise mean nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as \"10s\" or \"2m\", got %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func defaults() Config {
	return Config{
		ShutdownTimeout: Duration{15 * time.Second},
		MetricsService: MetricsService{
			Enabled:           true,
			MTLS:              true,
			OwnMetricsPath:    "/proxy/metrics",
			MaxConnections:    4096,
			HandshakeTimeout:  Duration{10 * time.Second},
			ReadHeaderTimeout: Duration{10 * time.Second},
			IdleTimeout:       Duration{3 * time.Minute},
			ReloadInterval:    Duration{30 * time.Second},
			ExpiryWarning:     Duration{14 * 24 * time.Hour},
		},
		Upstream: Upstream{
			MetricsPath: "/metrics",
			Timeout:     Duration{10 * time.Second},
			MaxTimeout:  Duration{2 * time.Minute},
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Load reads, decodes and checks the configuration file at path. Relative
// file names inside it are taken relative to the file's folder. Every
// problem found is returned at once, as a [Problems].
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	// Messages name files by their full path, whatever folder the
	// proxy was started in.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return Parse(path, data)
}

// Parse is Load for a file already read; path names it in messages and
// anchors relative file names.
func Parse(path string, data []byte) (*Config, error) {
	cfg := defaults()
	cfg.File = path
	lines := locateKeys(data)
	probs := &Problems{File: path, lines: lines}

	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		probs.addDecodeError(err)
		return nil, probs
	}
	probs.addUnknownKeys(md)
	if !md.IsDefined("metrics_service") {
		cfg.MetricsService.Enabled = false
	}
	for _, section := range []string{"diag", "health"} {
		if md.IsDefined(section) && !md.IsDefined(section, "listen_addr") {
			probs.add(section+".listen_addr", "required when ["+section+"] is present")
		}
	}

	cfg.check(probs)
	if len(probs.List) > 0 {
		probs.sort()
		return nil, probs
	}
	cfg.lines = lines
	cfg.sum = sha256.Sum256(data)
	return &cfg, nil
}

// check validates cfg, resolves relative paths and fills derived fields.
func (c *Config) check(p *Problems) {
	dir := filepath.Dir(c.File)
	ms := &c.MetricsService

	if ms.Enabled {
		c.checkMetricsService(dir, p)
	}

	u := &c.Upstream
	switch addr, err := upstream.ParseAddress(u.URL); {
	case u.URL == "":
		p.add("upstream.url", "required: where the daemon's diag server listens, "+
			"such as \"http://127.0.0.1:6060\" or \"unix:///run/daemon/diag.sock\"")
	case err != nil:
		p.add("upstream.url", err.Error())
	case !addr.IsLocal() && !u.AllowRemote:
		p.add("upstream.url", fmt.Sprintf("%s is not loopback or a unix socket; metrics "+
			"would cross the network in clear text. Set upstream.allow_remote = true "+
			"if that is really meant", u.URL))
	default:
		u.Address = addr
	}
	if err := policy.ValidatePath(u.MetricsPath); err != nil {
		p.add("upstream.metrics_path", err.Error())
	}
	checkPositive(p, "upstream.timeout", u.Timeout)
	checkPositive(p, "upstream.max_timeout", u.MaxTimeout)
	checkPositive(p, "shutdown_timeout", c.ShutdownTimeout)

	if c.Diag.ListenAddr != "" {
		if _, port, err := net.SplitHostPort(c.Diag.ListenAddr); err != nil {
			p.add("diag.listen_addr", fmt.Sprintf("want host:port: %v", err))
		} else if ms.Enabled && port != "0" && c.Diag.ListenAddr == ms.ListenAddr {
			p.add("diag.listen_addr", "same address as metrics_service.listen_addr")
		}
	}
	if c.Diag.KeepMetrics {
		switch {
		case c.Diag.ListenAddr == "":
			p.add("diag.keep_metrics", "needs diag.listen_addr")
		case ms.Enabled:
			c.Warnings = append(c.Warnings, "diag.keep_metrics = true: the metrics path "+
				"is still served in clear text on the diag listener; turn it off once "+
				"Prometheus scrapes the mTLS listener")
		}
	}
	checkListenAddr(p, "health.listen_addr", c.Health.ListenAddr)

	if !ms.Enabled && c.Diag.ListenAddr == "" {
		p.add("metrics_service.enabled", "nothing to serve: the metrics service is "+
			"disabled and there is no diag.listen_addr")
	}

	if hclog.LevelFromString(c.Log.Level) == hclog.NoLevel {
		p.add("log.level", fmt.Sprintf("unknown level %q; want trace, debug, info, warn "+
			"or error", c.Log.Level))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.add("log.format", fmt.Sprintf("unknown format %q; want text or json", c.Log.Format))
	}
}

func (c *Config) checkMetricsService(dir string, p *Problems) {
	ms := &c.MetricsService

	addr, err := withDefaultPort(ms.ListenAddr, DefaultMetricsPort)
	if err != nil {
		p.add("metrics_service.listen_addr", err.Error())
	}
	ms.ListenAddr = addr

	for i := range ms.CACerts {
		ms.CACerts[i] = resolve(dir, ms.CACerts[i])
	}
	for i := range ms.CRLFiles {
		ms.CRLFiles[i] = resolve(dir, ms.CRLFiles[i])
	}
	for i := range ms.Keypairs {
		kp := &ms.Keypairs[i]
		key := fmt.Sprintf("metrics_service.keypairs[%d]", i)
		if kp.CertFile == "" {
			p.add(key+".cert_file", "required")
		}
		if kp.KeyFile == "" {
			p.add(key+".key_file", "required")
		}
		kp.CertFile, kp.KeyFile = resolve(dir, kp.CertFile), resolve(dir, kp.KeyFile)
	}

	if !ms.MTLS {
		c.Warnings = append(c.Warnings, "metrics_service.mtls = false: the metrics "+
			"listener serves clear text and does NOT verify clients; anyone who can "+
			"reach it can read the metrics")
		if len(ms.Keypairs) > 0 || len(ms.CACerts) > 0 {
			c.Warnings = append(c.Warnings, "metrics_service.keypairs and ca_certs are "+
				"ignored while mtls = false")
		}
	} else {
		// Fail closed: mTLS without a CA would have to accept any client,
		// and without a keypair there is no TLS at all. Neither is a
		// fallback we take silently.
		if len(ms.Keypairs) == 0 {
			p.add("metrics_service.keypairs", "mtls is enabled but no keypairs are "+
				"configured; add a [[metrics_service.keypairs]] with cert_file and key_file")
		}
		if len(ms.CACerts) == 0 {
			p.add("metrics_service.ca_certs", "mtls is enabled but ca_certs is empty; "+
				"list the CA bundles that sign your scrapers' client certificates")
		}
	}

	if ms.OwnMetricsPath != "" {
		if err := policy.ValidatePath(ms.OwnMetricsPath); err != nil {
			p.add("metrics_service.own_metrics_path", err.Error())
		} else if ms.OwnMetricsPath == c.Upstream.MetricsPath {
			p.add("metrics_service.own_metrics_path", "must differ from upstream.metrics_path")
		}
	}

	if ms.MaxConnections < 1 {
		p.add("metrics_service.max_connections", "must be at least 1")
	}

	c.checkTLS(p)
	checkPositive(p, "metrics_service.reload_interval", ms.ReloadInterval)
	checkPositive(p, "metrics_service.expiry_warning", ms.ExpiryWarning)
	checkPositive(p, "metrics_service.handshake_timeout", ms.HandshakeTimeout)
	checkPositive(p, "metrics_service.read_header_timeout", ms.ReadHeaderTimeout)
	checkPositive(p, "metrics_service.idle_timeout", ms.IdleTimeout)
}

// checkTLS parses the TLS and identity settings into ms.TLS.
func (c *Config) checkTLS(p *Problems) {
	ms := &c.MetricsService
	t := &ms.TLS
	var err error

	if ms.MinVersion != "" {
		if t.MinVersion, err = policy.ParseTLSVersion(ms.MinVersion); err != nil {
			p.add("metrics_service.min_version", err.Error())
		}
	}
	if ms.MaxVersion != "" {
		if t.MaxVersion, err = policy.ParseTLSVersion(ms.MaxVersion); err != nil {
			p.add("metrics_service.max_version", err.Error())
		}
	}
	if t.MinVersion != 0 && t.MaxVersion != 0 && t.MaxVersion < t.MinVersion {
		p.add("metrics_service.max_version", "below min_version")
	}
	if t.CipherSuites, err = policy.ParseCipherSuites(ms.CipherSuites); err != nil {
		p.add("metrics_service.cipher_suites", err.Error())
	}
	if len(ms.CipherSuites) > 0 && t.MinVersion == tls.VersionTLS13 {
		c.Warnings = append(c.Warnings, "metrics_service.cipher_suites has no effect "+
			"with min_version = \"TLS13\": TLS 1.3 suites are not configurable")
	}
	if t.Curves, err = policy.ParseCurves(ms.CurvePreferences); err != nil {
		p.add("metrics_service.curve_preferences", err.Error())
	}

	t.Identity, err = policy.CompileIdentity(policy.IdentityRules{
		SANs:                ms.ClientAllowedSANs,
		CommonNames:         ms.ClientAllowedCommonNames,
		OrganizationalUnits: ms.ClientAllowedOrganizationalUnits,
	})
	if err != nil {
		for _, e := range unjoin(err) {
			key, msg, _ := strings.Cut(e.Error(), ": ")
			p.add("metrics_service."+key, msg)
		}
	}
	if !ms.MTLS && (len(ms.ClientAllowedSANs)+len(ms.ClientAllowedCommonNames)+
		len(ms.ClientAllowedOrganizationalUnits)+len(ms.CRLFiles) > 0) {
		p.add("metrics_service.mtls", "identity rules and crl_files need mtls = true")
	}
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkListenAddr checks an optional host:port.
func checkListenAddr(p *Problems, key, addr string) {
	if addr == "" {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.add(key, fmt.Sprintf("want host:port: %v", err))
	}
}

// withDefaultPort returns addr with port added when it names none.
func withDefaultPort(addr, port string) (string, error) {
	if addr == "" {
		return net.JoinHostPort("", port), nil
	}
	if ip := net.ParseIP(addr); ip != nil {
		return net.JoinHostPort(addr, port), nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return net.JoinHostPort(addr, port), nil
		}
		return addr, fmt.Errorf("want host:port: %w", err)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return addr, fmt.Errorf("port %q must be a number from 0 to 65535", p)
	}
	return net.JoinHostPort(host, p), nil
}

func resolve(dir, name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

func checkPositive(p *Problems, key string, d Duration) {
	if d.Duration <= 0 {
		p.add(key, fmt.Sprintf("must be positive, got %s", d))
	}
}
