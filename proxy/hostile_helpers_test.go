package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hostileConfig is what the hostile-input tests add to [metrics_service]:
// timeouts small enough that a test can wait them out.
const hostileConfig = `handshake_timeout = "1s"
read_header_timeout = "1s"
idle_timeout = "2s"
reload_interval = "1h"`

// hostileEnv is a proxy with small timeouts in front of a recording
// upstream, with the PKI both were built from.
type hostileEnv struct {
	pki *testPKI
	up  *recordingUpstream
	rp  *runningProxy
}

// startHostile starts a recording upstream and a proxy in front of it with
// hostileConfig plus extra in [metrics_service].
func startHostile(t testing.TB, extra string) *hostileEnv {
	t.Helper()
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, hostileConfig+"\n"+extra))
	return &hostileEnv{pki: pki, up: up, rp: rp}
}

// clientTLS is the TLS configuration of an allowed scraper offering protos
// by ALPN.
func (p *testPKI) clientTLS(protos ...string) *tls.Config {
	return &tls.Config{
		RootCAs:      p.ca.Pool(),
		ServerName:   "sidecar.test",
		Certificates: []tls.Certificate{p.client.TLSCertificate()},
		NextProtos:   protos,
	}
}

// dialMetrics completes a TLS handshake with the metrics listener as an
// allowed client; the connection is closed when the test ends.
func dialMetrics(t testing.TB, addr string, pki *testPKI, protos ...string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, pki.clientTLS(protos...))
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rawAnswer is what came back for a request written byte for byte: the
// response, if one could be parsed, and the body read to its end.
type rawAnswer struct {
	resp    *http.Response // nil when no response came
	body    []byte
	err     error // reading the response or its body
	reader  *bufio.Reader
	conn    net.Conn
	started time.Time
}

// status is the response's status code, or 0 when none came.
func (a *rawAnswer) status() int {
	if a.resp == nil {
		return 0
	}
	return a.resp.StatusCode
}

// sendRaw writes req byte for byte on a new TLS connection (HTTP/1.1 by
// ALPN) and reads one response to method. Unlike rawRequest it tolerates a
// server that closes without answering, which is itself an answer.
func sendRaw(t testing.TB, addr string, pki *testPKI, method string, req []byte) *rawAnswer {
	t.Helper()
	conn := dialMetrics(t, addr, pki, "http/1.1")
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	a := &rawAnswer{conn: conn, reader: bufio.NewReader(conn), started: time.Now()}

	// Write in the background: a server that answers early and closes
	// must not leave the test stuck in a write.
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(req)
		werr <- err
	}()
	a.readNext(method)
	if a.resp == nil {
		// Nothing parsable came back; the write error, if any, says more.
		select {
		case err := <-werr:
			if err != nil && a.err != nil {
				a.err = errors.Join(a.err, err)
			}
		case <-time.After(time.Second):
		}
	}
	return a
}

// readNext reads the next response on the connection into a.
func (a *rawAnswer) readNext(method string) {
	a.resp, a.body, a.err = nil, nil, nil
	resp, err := http.ReadResponse(a.reader, &http.Request{Method: method})
	if err != nil {
		a.err = err
		return
	}
	a.resp = resp
	a.body, a.err = io.ReadAll(resp.Body)
	resp.Body.Close()
}

// requestLog is an upstream's record of requests; both recordingUpstream
// and faultUpstream keep one.
type requestLog interface {
	requests() []*http.Request
}

// noneSince fails the test if the upstream saw any request after the
// first before.
func noneSince(t testing.TB, up requestLog, before int, what string) {
	t.Helper()
	reqs := up.requests()
	if len(reqs) <= before {
		return
	}
	for _, r := range reqs[before:] {
		t.Errorf("BYPASS: upstream saw %s %q (RawQuery %q) for %s",
			r.Method, r.URL.Path, r.URL.RawQuery, what)
	}
}

// onlyMetricsSince checks that the upstream saw exactly want requests
// after the first before, each for exactly the metrics path, and returns
// them.
func onlyMetricsSince(t testing.TB, up requestLog, before, want int) []*http.Request {
	t.Helper()
	reqs := up.requests()[before:]
	if len(reqs) != want {
		t.Errorf("upstream saw %d requests, want %d", len(reqs), want)
	}
	for _, r := range reqs {
		if r.URL.Path != "/metrics" || r.URL.RawPath != "" {
			t.Errorf("BYPASS: upstream saw path %q (raw %q), want exactly /metrics",
				r.URL.Path, r.URL.RawPath)
		}
	}
	return reqs
}

// settledGoroutines returns the goroutine count once it has stopped
// falling, so that a baseline is not taken while earlier tests still wind
// down.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// goroutineSlack is how far above its baseline the goroutine count may
// end: idle keep-alive connections to the upstream come and go with the
// load, each with a server goroutine, and timers fire late on a loaded
// machine.
const goroutineSlack = 8

// idleDropper is an upstream whose idle keep-alive connections can be
// closed: their server goroutines live in the test process and would
// count against a goroutine baseline without being the proxy's.
type idleDropper interface{ dropIdle() }

// waitGoroutines waits up to within for the goroutine count to come back
// to at most base+goroutineSlack, and fails the test with the goroutines
// then alive if it does not: something is stuck for good. The upstreams'
// idle connections are closed on every look.
func waitGoroutines(t testing.TB, base int, within time.Duration, ups ...idleDropper) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, u := range ups {
			u.dropIdle()
		}
		n := runtime.NumGoroutine()
		if n <= base+goroutineSlack {
			t.Logf("goroutines: %d, baseline %d, settled after %v", n, base,
				within-time.Until(deadline).Round(time.Millisecond))
			return n
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Errorf("LEAK: %d goroutines %v after the connections ended, baseline %d; "+
				"alive:\n%s", n, within, base, firstLines(b.String(), 120))
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstLines returns at most n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...\n")
	}
	return strings.Join(lines, "")
}

// waitConnEnd reads from c, discarding, until the peer closes it or an
// error occurs, and returns how long that took from start. It gives up
// after limit and then reports ok=false.
func waitConnEnd(c net.Conn, start time.Time, limit time.Duration) (time.Duration, bool) {
	_ = c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return time.Since(start), false
		}
		return time.Since(start), true
	}
}

// faultUpstream is a daemon whose behaviour a test chooses per request. It
// records every request like recordingUpstream and counts the handlers
// still running.
type faultUpstream struct {
	ln      net.Listener
	srv     *http.Server
	handler http.HandlerFunc

	mu      sync.Mutex
	reqs    []*http.Request
	running atomic.Int64
}

// newFaultUpstream serves h on a new loopback listener until the test
// ends.
func newFaultUpstream(t testing.TB, h http.HandlerFunc) *faultUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &faultUpstream{ln: ln, handler: h}
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serve)}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() { _ = u.srv.Close() })
	return u
}

func (u *faultUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, r.Clone(r.Context()))
	u.mu.Unlock()
	u.running.Add(1)
	defer u.running.Add(-1)
	u.handler(w, r)
}

func (u *faultUpstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// dropIdle closes the upstream's idle keep-alive connections.
func (u *faultUpstream) dropIdle() {
	u.srv.SetKeepAlivesEnabled(false)
	u.srv.SetKeepAlivesEnabled(true)
}

// dropIdle closes the upstream's idle keep-alive connections.
func (u *recordingUpstream) dropIdle() {
	u.Config.SetKeepAlivesEnabled(false)
	u.Config.SetKeepAlivesEnabled(true)
}

// URL is the upstream's base URL.
func (u *faultUpstream) URL() string { return "http://" + u.ln.Addr().String() }

// waitIdle waits until no handler of the upstream runs any more, and
// fails the test if one still does after within.
func (u *faultUpstream) waitIdle(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for u.running.Load() > 0 {
		if time.Now().After(deadline) {
			t.Errorf("LEAK: %d upstream requests still running %v later: the proxy did "+
				"not cancel them", u.running.Load(), within)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
