package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// testPKI is a CA with a server keypair and a client keypair, written to a
// temporary folder as ca.pem, server.pem and server-key.pem.
type testPKI struct {
	dir    string
	ca     *devpki.CA
	server *devpki.Leaf
	client *devpki.Leaf
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: t.TempDir(), ca: ca}
	p.server = mustIssue(t, ca, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
	p.client = mustIssue(t, ca, devpki.ClientTemplate("prometheus.test"))

	writeFile(t, p.dir, "ca.pem", ca.CertPEM(), 0o644)
	writeFile(t, p.dir, "server.pem", p.server.CertPEM(), 0o644)
	writeFile(t, p.dir, "server-key.pem", p.server.KeyPEM(), 0o600)
	return p
}

func mustIssue(t testing.TB, ca *devpki.CA, tmpl devpki.Template) *devpki.Leaf {
	t.Helper()
	l, err := ca.Issue(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// recordingUpstream is a diag server that records every request it gets.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newRecordingUpstream(t testing.TB) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		switch r.URL.Path {
		case "/metrics":
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintln(w, "upstream_up 1")
		case "/healthz":
			fmt.Fprintln(w, "ok")
		default:
			fmt.Fprintln(w, "upstream served", r.URL.Path)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// baseConfig returns a configuration for pki and up with both listeners on
// ephemeral ports; extra is appended to [metrics_service].
func baseConfig(pki *testPKI, upURL, extra string) string {
	return fmt.Sprintf(`
[metrics_service]
listen_addr = "127.0.0.1:0"
ca_certs = ["ca.pem"]
%s

[[metrics_service.keypairs]]
cert_file = "server.pem"
key_file = "server-key.pem"

[upstream]
url = %q
timeout = "5s"

[diag]
listen_addr = "127.0.0.1:0"

[log]
level = "debug"
`, extra, upURL)
}

// runningProxy is a Proxy serving in the background of a test.
type runningProxy struct {
	*Proxy
	logs    *syncBuffer
	metrics string // host:port
	diag    string // host:port
}

// startProxy loads cfgText as dir/proxy.toml and serves it until the test
// ends.
func startProxy(t testing.TB, dir, cfgText string) *runningProxy {
	t.Helper()
	path := writeFile(t, dir, "proxy.toml", []byte(cfgText), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	logs := &syncBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.LevelFromString(cfg.Log.Level),
		Output: logs})
	p, err := New(cfg, log)
	if err != nil {
		t.Fatalf("building proxy: %v", err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})

	// Serve logs its listeners after the certificate watch is in place;
	// a test that changes files must not race it.
	logs.waitForLog(t, "listening")

	rp := &runningProxy{Proxy: p, logs: logs}
	if a := p.Addr("metrics"); a != nil {
		rp.metrics = a.String()
	}
	if a := p.Addr("diag"); a != nil {
		rp.diag = a.String()
	}
	return rp
}

// syncBuffer is a log sink that tests can read while the proxy writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitForLog waits until the log holds want; handshake failures are logged
// from another goroutine than the one the client sees fail in.
func (s *syncBuffer) waitForLog(t testing.TB, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q; log:\n%s", want, s.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tlsClient returns an HTTP client that trusts roots and presents cert,
// if given, whatever CAs the server asks for, as curl and openssl do. (A Go
// client left to choose sends no certificate at all when its certificate's
// issuer is not among the CAs the server names.)
func tlsClient(roots *x509.CertPool, cert ...tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: roots}
	if len(cert) > 0 {
		c := cert[0]
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c, nil
		}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches url and returns the status and body.
func get(t testing.TB, c *http.Client, url string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
