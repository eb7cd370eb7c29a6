package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawRequest sends req byte for byte over a fresh TLS connection and
// returns the response. Go's HTTP client cleans paths before sending, so
// hostile targets have to be written by hand, as curl --path-as-is would.
func rawRequest(t testing.TB, addr string, pki *testPKI, req string) *http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		RootCAs:      pki.ca.Pool(),
		ServerName:   "sidecar.test",
		Certificates: []tls.Certificate{pki.client.TLSCertificate()},
		NextProtos:   []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	// The method tells ReadResponse whether a body follows (not for HEAD).
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response to %q: %v", req, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestOnlyTheMetricsPathPasses covers C14, C17 and C18: every target but
// the exact metrics path is answered by the proxy, and the upstream never
// hears of it.
func TestOnlyTheMetricsPathPasses(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	tests := []struct {
		name   string
		method string
		target string
		status int
		query  string // the raw query the upstream must see, on 200
	}{
		{"exact path", "GET", "/metrics", 200, ""},
		{"HEAD", "HEAD", "/metrics", 200, ""},
		{"C18 query passes byte for byte", "GET", "/metrics?collect[]=cpu&collect[]=mem", 200,
			"collect[]=cpu&collect[]=mem"},
		{"C18 empty query", "GET", "/metrics?", 200, ""},
		{"C18 path-like query", "GET", "/metrics?x=/../debug/pprof/heap", 200,
			"x=/../debug/pprof/heap"},
		{"C18 bad escape in query", "GET", "/metrics?%zz", 200, "%zz"},
		{"C14 dot-dot to pprof", "GET", "/metrics/../debug/pprof/heap", 404, ""},
		{"C14 dot-dot to healthz", "GET", "/metrics/../healthz", 404, ""},
		{"C14 dot segment", "GET", "/metrics/./", 404, ""},
		{"C14 trailing dot-dot", "GET", "/metrics/..", 404, ""},
		{"trailing slash", "GET", "/metrics/", 404, ""},
		{"double slash", "GET", "//metrics", 404, ""},
		{"encoded letter", "GET", "/%6detrics", 404, ""},
		{"C15 encoded slash", "GET", "/metrics%2F..%2Fdebug", 404, ""},
		{"C15 encoded question mark", "GET", "/metrics%3Fx=1", 404, ""},
		{"C15 encoded hash", "GET", "/metrics%23frag", 404, ""},
		{"upper case", "GET", "/METRICS", 404, ""},
		{"absolute form", "GET", "https://sidecar.test/metrics", 404, ""},
		{"C17 pprof index", "GET", "/debug/pprof/", 404, ""},
		{"C17 pprof cmdline", "GET", "/debug/pprof/cmdline", 404, ""},
		{"C17 pprof profile", "GET", "/debug/pprof/profile?seconds=1", 404, ""},
		{"C17 expvar", "GET", "/debug/vars", 404, ""},
		{"C17 healthz", "GET", "/healthz", 404, ""},
		{"C17 readyz", "GET", "/readyz", 404, ""},
		{"C17 root", "GET", "/", 404, ""},
		{"C17 favicon", "GET", "/favicon.ico", 404, ""},
		{"POST", "POST", "/metrics", 405, ""},
		{"DELETE", "DELETE", "/metrics", 405, ""},
		{"OPTIONS on path", "OPTIONS", "/metrics", 405, ""},
		{"OPTIONS star", "OPTIONS", "*", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			resp := rawRequest(t, rp.metrics, pki, fmt.Sprintf(
				"%s %s HTTP/1.1\r\nHost: sidecar.test\r\nContent-Length: 0\r\n\r\n",
				tc.method, tc.target))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("redirect to %q: a refused path must not be redirected", loc)
			}

			reqs := up.requests()[before:]
			if tc.status != http.StatusOK {
				if len(reqs) != 0 {
					t.Fatalf("upstream saw %s %s", reqs[0].Method, reqs[0].RequestURI)
				}
				if tc.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow %q, want \"GET, HEAD\"", resp.Header.Get("Allow"))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("upstream saw %d requests, want 1", len(reqs))
			}
			if got := reqs[0]; got.URL.Path != "/metrics" || got.URL.RawQuery != tc.query ||
				got.Method != tc.method {
				t.Errorf("upstream saw %s %q query %q, want %s /metrics query %q",
					got.Method, got.URL.Path, got.URL.RawQuery, tc.method, tc.query)
			}
		})
	}
	rp.logs.waitForLog(t, "reason=path")
}

// TestDiagListener checks that the clear-text listener forwards the
// daemon's other routes and keeps every spelling of the metrics path off.
func TestDiagListener(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	tests := []struct {
		target string
		status int
	}{
		{"/healthz", 200},
		{"/debug/pprof/", 200},
		{"/metricsx", 200},
		{"/metrics", 404},
		{"/metrics?x=1", 404},
		{"/metrics/", 404},
		{"//metrics", 404},
		{"/%6detrics", 404},
		{"/Metrics", 404},
		{"/metrics;a=b", 404},
		{"/foo/../metrics", 404},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			before := len(up.requests())
			conn, err := net.Dial("tcp", rp.diag)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: daemon\r\n\r\n", tc.target)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			seen := len(up.requests()) - before
			if tc.status == 404 {
				if seen != 0 {
					t.Error("upstream saw a spelling of the metrics path")
				}
				if !strings.Contains(string(body), "moved to the mTLS metrics listener") {
					t.Errorf("404 body %q lacks the hint", body)
				}
			} else if seen != 1 {
				t.Errorf("upstream saw %d requests, want 1", seen)
			}
		})
	}
}

func TestMetricsDisabledDiagForwardsEverything(t *testing.T) {
	up := newRecordingUpstream(t)
	dir := t.TempDir()
	rp := startProxy(t, dir, fmt.Sprintf(`
[metrics_service]
enabled = false

[upstream]
url = %q

[diag]
listen_addr = "127.0.0.1:0"
`, up.URL))

	if rp.Addr("metrics") != nil {
		t.Fatal("a metrics listener opened while the service is disabled")
	}
	status, body, err := get(t, http.DefaultClient, "http://"+rp.diag+"/metrics")
	if err != nil || status != 200 || body != "upstream_up 1\n" {
		t.Fatalf("got %d %q %v, want the upstream's metrics", status, body, err)
	}
}

func TestMTLSOffServesClearText(t *testing.T) {
	up := newRecordingUpstream(t)
	dir := t.TempDir()
	rp := startProxy(t, dir, fmt.Sprintf(`
[metrics_service]
listen_addr = "127.0.0.1:0"
mtls = false

[upstream]
url = %q
`, up.URL))

	status, _, err := get(t, http.DefaultClient, "http://"+rp.metrics+"/metrics")
	if err != nil || status != 200 {
		t.Fatalf("got %d %v", status, err)
	}
	status, _, _ = get(t, http.DefaultClient, "http://"+rp.metrics+"/healthz")
	if status != 404 {
		t.Errorf("/healthz: %d, want 404 even without mTLS", status)
	}
	rp.logs.waitForLog(t, "does NOT verify clients")
}

// TestPlainHTTPOnTLSPort covers C25a.
func TestPlainHTTPOnTLSPort(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	status, body, err := get(t, http.DefaultClient, "http://"+rp.metrics+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if status != 400 || !strings.Contains(body, "HTTP request to an HTTPS server") {
		t.Errorf("got %d %q, want 400 with an explanation", status, body)
	}
	rp.logs.waitForLog(t, "reason=plaintext_http")
	if len(up.requests()) != 0 {
		t.Error("upstream was contacted")
	}
}

// TestUpstreamDown covers C23a: 502 with a short body, the detail in the
// log.
func TestUpstreamDown(t *testing.T) {
	pki := newTestPKI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	rp := startProxy(t, pki.dir, baseConfig(pki, "http://"+addr, ""))
	c := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	status, body, err := get(t, c, "https://"+rp.metrics+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusBadGateway || strings.TrimSpace(body) != "upstream unavailable" {
		t.Errorf("got %d %q, want 502 \"upstream unavailable\"", status, body)
	}
	rp.logs.waitForLog(t, "failure=dial")
	rp.logs.waitForLog(t, "connection refused")
	rp.logs.waitForLog(t, "upstream not reachable yet")
}

// TestScrapeStreams checks, through the whole proxy, that a daemon which
// pauses mid-body still has what it sent so far reach the scraper: the
// proxy holds bytes back only briefly, for HTTP/1.1 and HTTP/2 alike.
func TestScrapeStreams(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first_part 1\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "second_part 2\n")
	}))
	t.Cleanup(up.Close)
	pki := newTestPKI(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			tr := &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pki.ca.Pool(), NextProtos: []string{proto},
					Certificates: []tls.Certificate{pki.client.TLSCertificate()}},
				ForceAttemptHTTP2: proto == "h2",
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(
				"https://" + rp.metrics + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()

			first := make([]byte, len("first_part 1\n"))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("the first part did not arrive while the daemon paused: %v", err)
			}
			release <- struct{}{}
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "second_part 2\n" {
				t.Errorf("rest %q, %v", rest, err)
			}
		})
	}
}
