package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// mixTimeouts are the proxy's timeouts in the mixed runs: short, so that
// slow clients cycle many times in a run.
const mixTimeouts = `handshake_timeout = "2s"
read_header_timeout = "2s"
idle_timeout = "5s"
`

// mixProxy is the real binary serving the dev PKI in front of diagd, with
// what the mixed clients need to reach both.
type mixProxy struct {
	*proxyProc
	k         pki
	diagdAddr string
	roots     *x509.CertPool
	client    tls.Certificate
	foreign   tls.Certificate // signed by a CA the proxy does not trust
	self      tls.Certificate // self-signed
}

// startMixProxy starts diagd and the proxy in front of it with mixTimeouts.
func startMixProxy(t testing.TB) *mixProxy {
	t.Helper()
	k := newPKI(t)
	_, diagd := startDiagd(t, "127.0.0.1:0")
	cfg := strings.Replace(proxyConfig(k, proxyOptions{upstream: "http://" + diagd}),
		"mtls = true\n", "mtls = true\n"+mixTimeouts, 1)
	cfg = strings.Replace(cfg, `level = "debug"`, `level = "info"`, 1)
	p := startProc(t, "mtls-metrics-proxy", proxyBin, "run", "--config",
		writeFile(t, "proxy.toml", cfg))
	e := p.waitLog(t, "the metrics listener's address", func(e logEntry) bool {
		return e.str("@message") == "listening" && e.str("listener") == "metrics"
	})

	m := &mixProxy{proxyProc: &proxyProc{proc: p, addr: e.str("addr")}, k: k, diagdAddr: diagd}
	pemCA, err := os.ReadFile(k.ca)
	if err != nil {
		t.Fatal(err)
	}
	m.roots = x509.NewCertPool()
	m.roots.AppendCertsFromPEM(pemCA)
	if m.client, err = tls.LoadX509KeyPair(k.clientCert, k.clientKey); err != nil {
		t.Fatal(err)
	}
	other, err := devpki.NewCA("CA the proxy does not trust")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := other.Issue(devpki.ClientTemplate("prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	m.foreign = leaf.TLSCertificate()
	self, err := devpki.NewCA("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	m.self = self.TLSCertificate()
	return m
}

// tlsConfig returns a client configuration that presents cert, if any,
// whatever CAs the server names, and offers protos by ALPN.
func (m *mixProxy) tlsConfig(cert *tls.Certificate, protos ...string) *tls.Config {
	cfg := &tls.Config{RootCAs: m.roots, NextProtos: protos, ServerName: "localhost"}
	if cert != nil {
		c := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c, nil
		}
	}
	return cfg
}

// httpClient returns a client presenting cert over proto; keepAlive false
// makes every request a new connection.
func (m *mixProxy) httpClient(cert *tls.Certificate, proto string, keepAlive bool) *http.Client {
	tr := &http.Transport{
		Proxy:             nil,
		TLSClientConfig:   m.tlsConfig(cert, proto),
		ForceAttemptHTTP2: proto == "h2",
		DisableKeepAlives: !keepAlive,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// ownMetrics scrapes the proxy's own metrics over a connection of its own
// and returns the body; "" on failure.
func (m *mixProxy) ownMetrics() string {
	c := m.httpClient(&m.client, "http/1.1", false)
	res, err := scrape(c, "https://"+m.addr+"/proxy/metrics")
	if err != nil || res.status != http.StatusOK {
		return ""
	}
	return res.body
}

// goroutines reads go_goroutines from the proxy's own metrics; -1 on
// failure.
func (m *mixProxy) goroutines() int {
	v, ok := seriesValue(m.ownMetrics(), "go_goroutines")
	if !ok {
		return -1
	}
	return int(v)
}

// rssBytes reads the proxy process's resident set size from
// /proc/PID/status; -1 where there is no /proc.
func (m *mixProxy) rssBytes() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return -1
}

// seriesValue returns the value of the series written exactly as series
// in a text exposition.
func seriesValue(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// mixFigures counts what each kind of client tried and what went wrong.
type mixFigures struct {
	mu    sync.Mutex
	tried map[string]int
	// bad counts, per kind, valid scrapes that failed, hostile inputs
	// that got through (bypasses) or connections that did not end in
	// time (hangs).
	bad   map[string]int
	first map[string]string // the first thing that went wrong, per kind
}

func newMixFigures() *mixFigures {
	return &mixFigures{tried: map[string]int{}, bad: map[string]int{},
		first: map[string]string{}}
}

// record counts one input of kind; problem is "" when it went as it must.
func (f *mixFigures) record(kind, problem string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tried[kind]++
	if problem != "" {
		f.bad[kind]++
		if f.first[kind] == "" {
			f.first[kind] = problem
		}
	}
}

// report returns one line per kind, sorted.
func (f *mixFigures) report() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	kinds := make([]string, 0, len(f.tried))
	for k := range f.tried {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-34s tried %7d  bad %d", k, f.tried[k], f.bad[k])
		if f.first[k] != "" {
			fmt.Fprintf(&b, "  (first: %s)", f.first[k])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// mixWorker is one kind of client, run in a loop by runMix. It returns
// "" when the input went as it must, else what went wrong, prefixed by
// "FAIL" (a valid scrape failed), "BYPASS" (a hostile input got through)
// or "HANG" (the proxy did not end a connection in time).
type mixWorker struct {
	kind    string
	workers int
	pause   time.Duration
	run     func(m *mixProxy) string
}

// hostileTargets are request targets no scrape may be served for.
var hostileTargets = []string{
	"/metrics/../debug/pprof/heap", "/metrics/", "//metrics", "/%6detrics", "/METRICS",
	"/metrics%2F..%2Fhealthz", "/metrics;x", "/debug/pprof/", "/healthz", "/readyz",
	"https://localhost/metrics", "/metrics%00", "/metrics/%2e%2e/readyz", "*",
	"/metrics\\..\\healthz", "/.%2e/metrics", "/metrics#x", "/%2Fmetrics",
}

// mixWorkers returns the kinds of clients of a mixed run against m, and a
// function that closes the valid clients' kept-alive connections.
func mixWorkers(m *mixProxy) ([]mixWorker, func()) {
	var clients []*http.Client
	valid := func(proto string, keepAlive bool) func(*mixProxy) string {
		c := m.httpClient(&m.client, proto, keepAlive)
		clients = append(clients, c)
		return func(m *mixProxy) string {
			res, err := scrape(c, m.metricsURL())
			switch {
			case err != nil:
				return "FAIL " + err.Error()
			case res.status != http.StatusOK || !strings.Contains(res.body, "diagd_up 1"):
				return fmt.Sprintf("FAIL status %d", res.status)
			}
			return ""
		}
	}
	refused := func(cert func(m *mixProxy) *tls.Certificate) func(*mixProxy) string {
		return func(m *mixProxy) string {
			c := m.httpClient(cert(m), "http/1.1", false)
			res, err := scrape(c, m.metricsURL())
			if err == nil {
				return fmt.Sprintf("BYPASS status %d", res.status)
			}
			return ""
		}
	}
	closeAll := func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}
	return []mixWorker{
		{"valid HTTP/1.1 keep-alive", 2, 5 * time.Millisecond, valid("http/1.1", true)},
		{"valid HTTP/2", 1, 5 * time.Millisecond, valid("h2", true)},
		{"valid new connection each", 1, 5 * time.Millisecond, valid("http/1.1", false)},
		{"no certificate", 1, 20 * time.Millisecond,
			refused(func(*mixProxy) *tls.Certificate { return nil })},
		{"certificate of another CA", 1, 20 * time.Millisecond,
			refused(func(m *mixProxy) *tls.Certificate { return &m.foreign })},
		{"self-signed certificate", 1, 20 * time.Millisecond,
			refused(func(m *mixProxy) *tls.Certificate { return &m.self })},
		{"path tricks", 1, 5 * time.Millisecond, pathTrick},
		{"slowloris", 2, 0, slowloris},
		{"plain HTTP to the TLS port", 1, 20 * time.Millisecond, plainHTTP},
		{"connect and close", 1, 10 * time.Millisecond, connectClose},
	}, closeAll
}

// pathTrick sends a hostile target byte for byte over an allowed
// connection; anything but a refusal is a bypass.
func pathTrick(m *mixProxy) string {
	target := hostileTargets[rand.IntN(len(hostileTargets))]
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", m.addr,
		m.tlsConfig(&m.client, "http/1.1"))
	if err != nil {
		return "FAIL dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "FAIL reading the answer: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return fmt.Sprintf("BYPASS %q got 200", target)
	}
	return ""
}

// slowloris sends a request's header lines slowly and never ends them:
// the proxy must close the connection within read_header_timeout (2s)
// plus slack.
func slowloris(m *mixProxy) string {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", m.addr,
		m.tlsConfig(&m.client, "http/1.1"))
	if err != nil {
		return "FAIL dial: " + err.Error()
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
		return ""
	}
	const bound = 2*time.Second + 3*time.Second
	for i := 0; time.Since(start) < bound+time.Second; i++ {
		time.Sleep(300 * time.Millisecond)
		if _, err := fmt.Fprintf(conn, "X-Slow-%d: 1\r\n", i); err != nil {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = io.Copy(io.Discard, conn)
	if took := time.Since(start); err != nil && isTimeout(err) || took > bound+2*time.Second {
		return fmt.Sprintf("HANG open after %v", took.Round(time.Millisecond))
	}
	return ""
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// plainHTTP speaks clear HTTP to the TLS port: the answer is a 400 that
// says why.
func plainHTTP(m *mixProxy) string {
	conn, err := net.DialTimeout("tcp", m.addr, 5*time.Second)
	if err != nil {
		return "FAIL dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
	b, _ := io.ReadAll(conn)
	switch {
	case strings.Contains(string(b), "diagd_up"):
		return "BYPASS metrics in clear text"
	case !strings.Contains(string(b), "400 Bad Request"):
		return fmt.Sprintf("FAIL answer %q", b)
	}
	return ""
}

// connectClose opens a TCP connection and closes it, as load balancer
// checks do.
func connectClose(m *mixProxy) string {
	conn, err := net.DialTimeout("tcp", m.addr, 5*time.Second)
	if err != nil {
		return "FAIL dial: " + err.Error()
	}
	conn.Close()
	return ""
}

// mixResult is what runMix measured.
type mixResult struct {
	figures                       *mixFigures
	baseGoroutines, endGoroutines int
	baseRSS, endRSS               int64
}

// runMix runs every mixWorker against m for d, then waits for the proxy
// to settle: its goroutine count back to at most the baseline plus
// slack, within settle. It fails the test on any failed valid scrape,
// bypass or hang.
func runMix(t testing.TB, m *mixProxy, d, settle time.Duration) mixResult {
	t.Helper()
	// Warm up, then take the baseline with nothing else connected.
	warm := m.httpClient(&m.client, "http/1.1", true)
	for range 20 {
		mustScrape(t, warm, m.metricsURL())
	}
	warm.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	res := mixResult{figures: newMixFigures(), baseGoroutines: m.goroutines(),
		baseRSS: m.rssBytes()}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	workers, closeAll := mixWorkers(m)
	for _, w := range workers {
		for range w.workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					res.figures.record(w.kind, w.run(m))
					time.Sleep(w.pause)
				}
			})
		}
	}
	wg.Wait()
	// The valid clients hang up; every other client closed its
	// connections as it went.
	closeAll()

	deadline := time.Now().Add(settle)
	for {
		res.endGoroutines = m.goroutines()
		if res.endGoroutines >= 0 && res.endGoroutines <= res.baseGoroutines+goroutineMargin ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.endRSS = m.rssBytes()

	f := res.figures
	t.Logf("figures after %v:\n%s  proxy goroutines: baseline %d, end %d\n"+
		"  proxy RSS: baseline %.1f MiB, end %.1f MiB", d, f.report(), res.baseGoroutines,
		res.endGoroutines, float64(res.baseRSS)/(1<<20), float64(res.endRSS)/(1<<20))
	for kind, n := range f.bad {
		if n > 0 {
			t.Errorf("%s: %d of %d went wrong; first: %s", kind, n, f.tried[kind], f.first[kind])
		}
	}
	if res.endGoroutines < 0 || res.endGoroutines > res.baseGoroutines+goroutineMargin {
		t.Errorf("LEAK: the proxy has %d goroutines %v after the load, baseline %d",
			res.endGoroutines, settle, res.baseGoroutines)
	}
	checkDiagdSawOnlyScrapes(t, m)
	return res
}

// goroutineMargin is how far above its baseline the proxy's goroutine
// count may end: the connection that reads it, and timers.
const goroutineMargin = 6

// checkDiagdSawOnlyScrapes asks diagd itself what reached it: nothing but
// /metrics may have, whatever the hostile clients tried.
func checkDiagdSawOnlyScrapes(t testing.TB, m *mixProxy) {
	t.Helper()
	res := mustScrape(t, plainClient(t), "http://"+m.diagdAddr+"/metrics")
	for _, path := range []string{"/healthz", "/readyz"} {
		if v, _ := seriesValue(res.body,
			`diagd_http_requests_total{path="`+path+`"}`); v != 0 {
			t.Errorf("BYPASS: diagd served %s %v times", path, v)
		}
	}
}

// TestHostileMixAgainstBinary runs valid and hostile clients together
// against the real binary for a few seconds: no valid scrape fails, no
// hostile input gets through, every slow connection ends, and the
// proxy's goroutines return to their baseline. TestSoak runs the same for
// minutes.
func TestHostileMixAgainstBinary(t *testing.T) {
	m := startMixProxy(t)
	runMix(t, m, 6*time.Second, 15*time.Second)
}
