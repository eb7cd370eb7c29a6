package load

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// pki is a CA with server and client keypairs written to files.
type pki struct {
	server                    tls.Certificate
	ca                        *devpki.CA
	caFile, certFile, keyFile string
}

func newPKI(t testing.TB) pki {
	t.Helper()
	ca, err := devpki.NewCA("load test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(devpki.ServerTemplate("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(devpki.ClientTemplate("prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := pki{server: srv.TLSCertificate(), ca: ca, caFile: filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem")}
	for path, data := range map[string][]byte{p.caFile: ca.CertPEM(),
		p.certFile: cli.CertPEM(), p.keyFile: cli.KeyPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// mtlsServer serves h over TLS, requiring a client certificate of p's CA,
// and counts the handshakes it completes.
func mtlsServer(t testing.TB, p pki, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var handshakes atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		VerifyConnection: func(tls.ConnectionState) error {
			handshakes.Add(1)
			return nil
		},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &handshakes
}

const bodyLen = 50 << 10

// metrics answers like a daemon and fails the test on a header a
// Prometheus scrape would not send.
func metrics(t testing.TB, gzipAware bool) http.Handler {
	body := strings.Repeat("x", bodyLen)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, want := range map[string]string{"Accept": Accept, "User-Agent": UserAgent,
			"X-Prometheus-Scrape-Timeout-Seconds": ScrapeTimeout} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if gzipAware && r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
		}
		_, _ = w.Write([]byte(body))
	})
}

func TestRun(t *testing.T) {
	p := newPKI(t)
	good, handshakes := mtlsServer(t, p, metrics(t, true))
	plain, _ := mtlsServer(t, p, metrics(t, false))
	failing, _ := mtlsServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))

	tests := []struct {
		name       string
		url        string
		cfg        Config
		warm       bool
		scrapes    int64
		errKind    string
		conns      int64
		handshakes int64 // during the timed part
	}{
		{name: "keep-alive", url: good.URL, warm: true, scrapes: 20, conns: 0, handshakes: 0,
			cfg: Config{Concurrency: 2, Count: 20, ExpectBytes: bodyLen}},
		{name: "new connection per scrape", url: good.URL, warm: true, scrapes: 10, conns: 10,
			handshakes: 10,
			cfg:        Config{Concurrency: 2, Count: 10, NewConn: true, ExpectBytes: bodyLen}},
		{name: "gzip passed through", url: good.URL, warm: true, scrapes: 5,
			cfg: Config{Concurrency: 1, Count: 5, Gzip: true, ExpectBytes: bodyLen}},
		{name: "short body", url: good.URL, errKind: kindLength, conns: 1, handshakes: 1,
			cfg: Config{Concurrency: 1, Count: 3, ExpectBytes: bodyLen + 1}},
		{name: "encoding not honoured", url: plain.URL, errKind: kindEncoding, conns: 1,
			cfg: Config{Concurrency: 1, Count: 3, Gzip: true, ExpectBytes: bodyLen}},
		{name: "status", url: failing.URL, errKind: kindStatus, conns: 1,
			cfg: Config{Concurrency: 1, Count: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.URL, cfg.CAFile, cfg.CertFile, cfg.KeyFile = tc.url, p.caFile, p.certFile,
				p.keyFile
			cfg.Timeout = 10 * time.Second
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if tc.warm {
				if err := g.Warm(context.Background()); err != nil {
					t.Fatalf("Warm: %v", err)
				}
			}
			h0 := handshakes.Load()
			res := g.Run(context.Background())
			checkResult(t, res, tc.scrapes, tc.errKind, int64(cfg.Count))
			if res.Conns != tc.conns {
				t.Errorf("conns = %d, want %d", res.Conns, tc.conns)
			}
			if tc.url == good.URL && handshakes.Load()-h0 != tc.handshakes {
				t.Errorf("server saw %d handshakes, want %d", handshakes.Load()-h0,
					tc.handshakes)
			}
		})
	}
}

func checkResult(t *testing.T, res Result, scrapes int64, errKind string, count int64) {
	t.Helper()
	if res.Scrapes != scrapes {
		t.Errorf("scrapes = %d, want %d (first error: %s)", res.Scrapes, scrapes, res.FirstError)
	}
	if res.Resumed != 0 {
		t.Errorf("resumed = %d, want 0", res.Resumed)
	}
	if errKind == "" {
		if res.Errors != 0 || res.P50Ms == nil || res.P99Ms == nil || *res.P99Ms < *res.P50Ms {
			t.Errorf("errors %d, p50 %v, p99 %v: want no error and latencies", res.Errors,
				res.P50Ms, res.P99Ms)
		}
		if res.BodyBytes != scrapes*bodyLen || res.PerSecond <= 0 {
			t.Errorf("body bytes %d, per second %v", res.BodyBytes, res.PerSecond)
		}
		return
	}
	if res.Errors != count || res.ErrorKinds[errKind] != count || res.P50Ms != nil {
		t.Errorf("errors %d %v, p50 %v: want %d of kind %s and no latency", res.Errors,
			res.ErrorKinds, res.P50Ms, count, errKind)
	}
}

func TestWarmFails(t *testing.T) {
	p := newPKI(t)
	srv, _ := mtlsServer(t, p, http.NotFoundHandler())
	g, err := New(Config{URL: srv.URL, CAFile: p.caFile, CertFile: p.certFile,
		KeyFile: p.keyFile, Concurrency: 2, Duration: time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Warm(context.Background()); err == nil {
		t.Fatal("Warm against a 404 succeeded")
	}
}

func TestRunReportsTLS(t *testing.T) {
	p := newPKI(t)
	srv, _ := mtlsServer(t, p, metrics(t, false))
	g, err := New(Config{URL: srv.URL, CAFile: p.caFile, CertFile: p.certFile,
		KeyFile: p.keyFile, Concurrency: 1, Count: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := g.Run(context.Background())
	if res.TLS == nil || res.TLS.Version != "TLS 1.3" || res.TLS.KeyExchange == "" ||
		res.Proto != "HTTP/1.1" {
		t.Fatalf("TLS %+v, proto %q: want TLS 1.3 over HTTP/1.1", res.TLS, res.Proto)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "http://127.0.0.1:1/metrics", Concurrency: 1, Duration: time.Second,
		Timeout: time.Second}
	tests := []struct {
		name   string
		change func(*Config)
		err    error
	}{
		{"valid", func(*Config) {}, nil},
		{"count instead of duration", func(c *Config) { c.Duration, c.Count = 0, 5 }, nil},
		{"bad scheme", func(c *Config) { c.URL = "ftp://x/metrics" }, ErrConfig},
		{"https without files", func(c *Config) { c.URL = "https://127.0.0.1:1/" }, ErrConfig},
		{"no scraper", func(c *Config) { c.Concurrency = 0 }, ErrConfig},
		{"no end", func(c *Config) { c.Duration = 0 }, ErrConfig},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, ErrConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			if _, err := New(c); !errors.Is(err, tc.err) {
				t.Fatalf("New error = %v, want %v", err, tc.err)
			}
		})
	}
}
