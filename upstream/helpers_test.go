package upstream_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// seen is what an upstream handler saw of one request.
type seen struct {
	method     string
	requestURI string
	host       string
	header     http.Header
}

// recordingHandler serves h and reports every request on the returned
// channel, before h runs.
func recordingHandler(h http.HandlerFunc) (http.Handler, <-chan seen) {
	ch := make(chan seen, 64)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- seen{r.Method, r.RequestURI, r.Host, r.Header.Clone()}:
		default:
		}
		h(w, r)
	}), ch
}

// startTCPUpstream serves h on 127.0.0.1 and returns its address.
func startTCPUpstream(t testing.TB, h http.Handler) upstream.Address {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return mustParseAddress(t, srv.URL)
}

// startUnixUpstream serves h on a unix socket in a temporary folder.
func startUnixUpstream(t testing.TB, h http.Handler) upstream.Address {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "diag.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return mustParseAddress(t, "unix://"+sock)
}

func mustParseAddress(t testing.TB, raw string) upstream.Address {
	t.Helper()
	a, err := upstream.ParseAddress(raw)
	if err != nil {
		t.Fatalf("ParseAddress(%q): %v", raw, err)
	}
	return a
}

// newForwarder returns a Forwarder to a for /metrics with generous
// timeouts, changed by opts.
func newForwarder(t testing.TB, a upstream.Address,
	opts ...func(*upstream.Options)) *upstream.Forwarder {
	t.Helper()
	o := upstream.Options{
		Address:    a,
		Path:       "/metrics",
		Timeout:    10 * time.Second,
		MaxTimeout: 30 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	f := upstream.NewForwarder(o)
	t.Cleanup(f.Close)
	return f
}

// frontend is a real HTTP server that forwards every request the way the
// proxy's scrape handler does: the raw query as the client sent it, and an
// aborted response when the forwarder says so.
type frontend struct {
	url     string
	client  *http.Client
	results chan upstream.Result
}

func startFrontend(t testing.TB, f *upstream.Forwarder) *frontend {
	t.Helper()
	fe := &frontend{results: make(chan upstream.Result, 64)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, rawQuery, hasQuery := strings.Cut(r.RequestURI, "?")
		res := f.Forward(w, r, rawQuery, hasQuery)
		select {
		case fe.results <- res:
		default:
		}
		if res.Aborted {
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)

	// A scraper negotiates its own encoding: never let the client add or
	// strip gzip on its own.
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	fe.url = srv.URL
	fe.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return fe
}

// result waits for the Result of the next forwarded request.
func (fe *frontend) result(t testing.TB) upstream.Result {
	t.Helper()
	select {
	case res := <-fe.results:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("no forwarding result within 10s")
		return upstream.Result{}
	}
}

// do sends method target (path and query, sent as is) with headers h and
// returns the response and its whole body.
func (fe *frontend) do(t testing.TB, method, target string, h http.Header) (*http.Response,
	[]byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, fe.url+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := fe.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// silentUpstream accepts TCP connections and never answers, like a daemon
// that hangs (C24a). Connections are closed when the test ends.
func silentUpstream(t testing.TB) upstream.Address {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return mustParseAddress(t, "http://"+ln.Addr().String())
}

// rawUpstream answers each connection by writing reply and closing it.
func rawUpstream(t testing.TB, reply string) upstream.Address {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the request head first so that closing sends FIN, not RST.
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 4096)
			_, _ = c.Read(buf)
			_, _ = io.WriteString(c, reply)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return mustParseAddress(t, "http://"+ln.Addr().String())
}

// closedPort returns the address of a loopback port nobody listens on. C23
// needs a refused connection, so this is the one place a listener is
// closed to free its port; nothing listens on it again.
func closedPort(t testing.TB) upstream.Address {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return mustParseAddress(t, "http://"+addr)
}

// discardWriter is a ResponseWriter that counts and drops the body.
type discardWriter struct {
	header http.Header
	status int
	n      int64
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(status int) { w.status = status }

func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

func (w *discardWriter) Flush() {}
