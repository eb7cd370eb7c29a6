package load

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"
)

// The request headers of a Prometheus 3 scrape with its default
// scrape_protocols and UTF-8 name validation.
const (
	// Accept lists OpenMetrics first, then the classic text format.
	Accept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6," +
		"application/openmetrics-text;version=0.0.1;q=0.5," +
		"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4," +
		"text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
	// UserAgent is a Prometheus 3 server's.
	UserAgent = "Prometheus/3.5.0"
	// ScrapeTimeout is the scrape_timeout Prometheus announces, in seconds.
	ScrapeTimeout = "10"
)

// ErrConfig is returned by [New] for a configuration it cannot run.
var ErrConfig = errors.New("invalid load configuration")

// Config describes a load.
type Config struct {
	// URL is the scrape target, http:// or https://.
	URL string
	// CAFile verifies the server; CertFile and KeyFile are the client's
	// keypair. All three are needed for https.
	CAFile, CertFile, KeyFile string
	// Concurrency is the number of scrapers, each with its own connection.
	Concurrency int
	// Duration bounds the load; scrapes in flight when it ends complete.
	Duration time.Duration
	// Count, when positive, ends the load after that many scrapes instead.
	Count int
	// NewConn makes every scrape open a new connection with a full TLS
	// handshake: keep-alive off and no session resumption.
	NewConn bool
	// Gzip asks for gzip bodies (Accept-Encoding: gzip); otherwise the
	// scrape asks for identity.
	Gzip bool
	// ExpectBytes, when positive, is the body length every scrape must
	// get; otherwise a Content-Length, when sent, is checked.
	ExpectBytes int64
	// Timeout bounds one scrape, body included.
	Timeout time.Duration
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return fmt.Errorf("%w: url: %w", ErrConfig, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: url %q: want http or https", ErrConfig, c.URL)
	case u.Scheme == "https" && (c.CAFile == "" || c.CertFile == "" || c.KeyFile == ""):
		return fmt.Errorf("%w: https needs --ca, --cert and --key", ErrConfig)
	case c.Concurrency < 1:
		return fmt.Errorf("%w: concurrency %d: want 1 or more", ErrConfig, c.Concurrency)
	case c.Duration <= 0 && c.Count <= 0:
		return fmt.Errorf("%w: want a duration or a count", ErrConfig)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout %v: want more than 0", ErrConfig, c.Timeout)
	}
	return nil
}

// tlsConfig is what Prometheus's tls_config builds: the CA to verify the
// server, the client keypair, TLS 1.2 at least, and no session cache, so
// that a new connection is a full handshake.
func (c Config) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading client keypair %s: %w", c.CertFile, err)
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA %s: %w", c.CAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("loading CA %s: no certificate in the file", c.CAFile)
	}
	return &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}
