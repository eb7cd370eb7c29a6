package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// smuggled is the request that framing tricks try to slip past the
// proxy; the upstream must never see it.
const smuggled = "GET /debug/pprof/heap HTTP/1.1\r\nHost: sidecar.test\r\n\r\n"

// framingCase is a byte stream sent on one connection, and the statuses of
// the responses the proxy must send for it, in order.
type framingCase struct {
	name string
	raw  string
	// want lists the statuses of the responses that must come; after the
	// last one the connection may close.
	want []int
	// forwarded is how many requests, each for /metrics, the upstream
	// must see.
	forwarded int
}

// chunk frames s as one HTTP/1.1 chunk.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

// framingCases returns the byte streams of TestHostileRequestFraming;
// upHost is the upstream's host:port, for Host tricks.
func framingCases(upHost string) []framingCase {
	get := "GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n"
	// The length of a body that is exactly the smuggled request.
	cl := fmt.Sprintf("Content-Length: %d\r\n", len(smuggled))
	return []framingCase{
		// A request that carries a body is answered, then its connection is
		// closed: whatever follows the body is never read as a request.
		{"CL and TE, smuggled request after an empty chunked body",
			get + "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			[]int{200}, 1},
		{"TE and CL, reversed order",
			get + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + smuggled,
			[]int{200}, 1},
		{"TE chunked on GET with a smuggled request inside the body",
			get + "Transfer-Encoding: chunked\r\n\r\n" + chunk(smuggled) + "0\r\n\r\n",
			[]int{200}, 1},
		{"TE chunked body then a plain request for healthz",
			get + "Transfer-Encoding: chunked\r\n\r\n" + chunk(smuggled) + "0\r\n\r\n" +
				"GET /healthz HTTP/1.1\r\nHost: sidecar.test\r\n\r\n",
			[]int{200}, 1},
		{"HTTP/1.0 keep-alive ignores TE, body parsed as a request",
			"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n" +
				"Transfer-Encoding: chunked\r\n\r\n" + smuggled,
			[]int{200, 404}, 1},
		{"duplicate Content-Length, different values",
			get + "Content-Length: 0\r\nContent-Length: 44\r\n\r\n" + smuggled, []int{400}, 0},
		{"duplicate Content-Length, same value", get + "Content-Length: 0\r\n" +
			"Content-Length: 0\r\n\r\n", []int{200}, 1},
		{"Content-Length list", get + "Content-Length: 0, 44\r\n\r\n" + smuggled,
			[]int{400}, 0},
		{"negative Content-Length", get + "Content-Length: -1\r\n\r\n", []int{400}, 0},
		{"signed Content-Length", get + "Content-Length: +44\r\n\r\n" + smuggled,
			[]int{400}, 0},
		{"Content-Length beyond int64", get + "Content-Length: 99999999999999999999\r\n\r\n",
			[]int{400}, 0},
		{"TE identity", get + "Transfer-Encoding: identity\r\n\r\n" + smuggled, []int{501}, 0},
		{"TE chunked twice", get + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked" +
			"\r\n\r\n0\r\n\r\n", []int{501}, 0},
		{"TE list", get + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []int{501}, 0},
		{"TE xchunked", get + "Transfer-Encoding: xchunked\r\n\r\n" + smuggled, []int{501}, 0},
		{"space before the colon", get + "Transfer-Encoding : chunked\r\n\r\n" +
			chunk(smuggled) + "0\r\n\r\n", []int{400}, 0},
		{"TE upper case is still chunked", get + "Transfer-Encoding: CHUNKED\r\n\r\n" +
			chunk(smuggled) + "0\r\n\r\n", []int{200}, 1},
		{"bad chunk size", get + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled,
			[]int{200}, 1},
		{"pipelined scrape and pprof", get + "\r\n" + smuggled, []int{200, 404}, 1},
		{"pipelined three scrapes", get + "\r\n" + get + "\r\n" + get + "\r\n",
			[]int{200, 200, 200}, 3},
		{"bare CR inside a header", get + "X-A: a\rGET /debug/pprof/ HTTP/1.1\r\n\r\n",
			[]int{400}, 0},
		{"bare LF line endings", "GET /metrics HTTP/1.1\nHost: sidecar.test\n\n",
			[]int{200}, 1},
		{"NUL in a header value", get + "X-A: a\x00b\r\n\r\n", []int{400}, 0},
		{"space in a header name", get + "X A: b\r\n\r\n", []int{400}, 0},
		{"header line without colon", get + "X-A\r\n\r\n", []int{400}, 0},
		{"obs-fold first header line", "GET /metrics HTTP/1.1\r\n Host: sidecar.test\r\n\r\n",
			[]int{400}, 0},
		{"obs-fold joining TE", get + "Transfer-Encoding:\r\n chunked\r\n\r\n" +
			chunk(smuggled) + "0\r\n\r\n", []int{200}, 1},
		{"two Host headers", "GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n" +
			"Host: 127.0.0.1\r\n\r\n", []int{400}, 0},
		{"no Host on HTTP/1.1", "GET /metrics HTTP/1.1\r\n\r\n", []int{400}, 0},
		{"Host with a path", "GET /metrics HTTP/1.1\r\nHost: sidecar.test/debug/pprof/\r\n\r\n",
			[]int{400}, 0},
		{"Host with a space", "GET /metrics HTTP/1.1\r\nHost: a b\r\n\r\n", []int{400}, 0},
		{"Host naming the upstream", "GET /metrics HTTP/1.1\r\nHost: " + upHost + "\r\n\r\n",
			[]int{200}, 1},
		{"Host of another site", "GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n",
			[]int{200}, 1},
		{"absolute form naming another host", "GET http://evil.example/metrics HTTP/1.1\r\n" +
			"Host: sidecar.test\r\n\r\n", []int{404}, 0},
		{"Expect 100-continue with a body",
			get + "Expect: 100-continue\r\n" + cl + "\r\n" + smuggled,
			[]int{200}, 1},
		{"small body on GET", get + cl + "\r\n" + smuggled, []int{200}, 1},
		{"body on HEAD", "HEAD /metrics HTTP/1.1\r\nHost: sidecar.test\r\n" +
			cl + "\r\n" + smuggled, []int{200}, 1},
	}
}

// TestHostileRequestFraming covers request smuggling: conflicting or
// repeated Content-Length and Transfer-Encoding, bodies on GET holding a
// request, pipelining, broken line endings and Host tricks. The proxy
// answers each request on its own, forwards only the scrapes, and the
// upstream never sees a smuggled request or any body.
func TestHostileRequestFraming(t *testing.T) {
	t.Parallel()
	env := startHostile(t, "")
	cases := framingCases(strings.TrimPrefix(env.up.URL, "http://"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			method, _, _ := strings.Cut(tc.raw, " ")
			a := sendRaw(t, env.rp.metrics, env.pki, method, []byte(tc.raw))
			for i, want := range tc.want {
				if i > 0 {
					a.readNext("GET")
				}
				if a.status() != want {
					t.Fatalf("response %d: status %d (%v), want %d", i+1, a.status(), a.err, want)
				}
			}
			// Nothing more than the responses wanted may come; the
			// connection may also have been closed.
			_ = a.conn.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			a.readNext("GET")
			if a.resp != nil {
				t.Errorf("an extra response came: %d", a.status())
			}

			reqs := onlyMetricsSince(t, env.up, before, tc.forwarded)
			for _, r := range reqs {
				if r.ContentLength != 0 || len(r.TransferEncoding) != 0 {
					t.Errorf("upstream got a body: Content-Length %d, Transfer-Encoding %q",
						r.ContentLength, r.TransferEncoding)
				}
				if r.Host != strings.TrimPrefix(env.up.URL, "http://") {
					t.Errorf("upstream got Host %q", r.Host)
				}
			}
		})
	}
	t.Logf("figures: %d framing inputs", len(cases))
}

// TestHostileHopByHopHeaders checks that headers which belong to the
// client's connection, those named in Connection included, never reach
// the daemon, while the end-to-end ones a scrape needs do.
func TestHostileHopByHopHeaders(t *testing.T) {
	env := startHostile(t, "")
	tests := []struct {
		name    string
		headers string
		dropped []string // must not reach the upstream
		kept    []string // must reach it
	}{
		{"Connection names the scrape timeout",
			"Connection: X-Prometheus-Scrape-Timeout-Seconds\r\n" +
				"X-Prometheus-Scrape-Timeout-Seconds: 3\r\nAccept: text/plain\r\n",
			[]string{"X-Prometheus-Scrape-Timeout-Seconds", "Connection"}, []string{"Accept"}},
		{"Connection names Accept-Encoding", "Connection: close, Accept-Encoding\r\n" +
			"Accept-Encoding: gzip\r\nUser-Agent: Prometheus/3\r\n",
			[]string{"Accept-Encoding"}, []string{"User-Agent"}},
		{"Connection list with odd spacing", "Connection: ,  X-A , ,x-b,\r\n" +
			"X-A: 1\r\nX-B: 2\r\nX-C: 3\r\n", []string{"X-A", "X-B"}, []string{"X-C"}},
		{"two Connection headers", "Connection: X-A\r\nConnection: X-B\r\n" +
			"X-A: 1\r\nX-B: 2\r\n", []string{"X-A", "X-B"}, nil},
		{"standard hop-by-hop headers",
			"Te: trailers\r\nTrailer: X-T\r\nKeep-Alive: timeout=5\r\n" +
				"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic c2VjcmV0\r\n",
			[]string{"Te", "Trailer", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization"},
			nil},
		{"upgrade to h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
			"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
			[]string{"Upgrade", "Http2-Settings", "Connection"}, nil},
		{"upgrade to websocket", "Connection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
			[]string{"Upgrade"}, nil},
		{"Connection names Host", "Connection: Host\r\n", nil, nil},
		{"obs-folded value", "X-Folded: a\r\n  b\r\n", nil, []string{"X-Folded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			a := sendRaw(t, env.rp.metrics, env.pki, "GET", []byte(
				"GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n"+tc.headers+"\r\n"))
			if a.status() != http.StatusOK {
				t.Fatalf("status %d (%v), want 200", a.status(), a.err)
			}
			reqs := onlyMetricsSince(t, env.up, before, 1)
			if len(reqs) != 1 {
				return
			}
			got := reqs[0].Header
			for _, h := range tc.dropped {
				if v, ok := got[http.CanonicalHeaderKey(h)]; ok {
					t.Errorf("hop-by-hop header %s reached the upstream: %q", h, v)
				}
			}
			for _, h := range tc.kept {
				if got.Get(h) == "" {
					t.Errorf("end-to-end header %s did not reach the upstream", h)
				}
			}
			for k, vs := range got {
				for _, v := range vs {
					if strings.ContainsAny(v, "\r\n") {
						t.Errorf("header %s reached the upstream with a line break: %q", k, v)
					}
				}
			}
			if reqs[0].Host != strings.TrimPrefix(env.up.URL, "http://") {
				t.Errorf("upstream got Host %q", reqs[0].Host)
			}
		})
	}
}

// TestHostileHeaderSizes checks the 32 KiB header limit: beyond it 431
// and nothing forwarded; under it, the scrape passes.
func TestHostileHeaderSizes(t *testing.T) {
	env := startHostile(t, "")
	many := func(n, size int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-H-%d: %s\r\n", i, strings.Repeat("v", size))
		}
		return b.String()
	}
	tests := []struct {
		name    string
		headers string
		want    int
	}{
		{"one 40 KiB header", "X-Big: " + strings.Repeat("b", 40<<10) + "\r\n", 431},
		{"600 headers of 64 bytes", many(600, 64), 431},
		{"1 MiB of headers", many(1024, 1000), 431},
		{"16 KiB of headers under the limit", many(256, 48), 200},
		{"2000 tiny headers under the limit", many(2000, 1), 200},
		{"oversized Host", "X-Pad: 1\r\n" + "Host2: " + strings.Repeat("h", 36<<10) + "\r\n",
			431},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			a := sendRaw(t, env.rp.metrics, env.pki, "GET", []byte(
				"GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n"+tc.headers+"\r\n"))
			if a.status() != tc.want {
				t.Fatalf("status %d (%v), want %d", a.status(), a.err, tc.want)
			}
			if tc.want != http.StatusOK {
				noneSince(t, env.up, before, tc.name)
				return
			}
			onlyMetricsSince(t, env.up, before, 1)
		})
	}
}

// TestHostileLargeBodyOnGET sends a 4 MiB body with a scrape. The proxy
// answers the scrape without passing the body on, and does not read the
// whole body either: it closes the connection instead.
func TestHostileLargeBodyOnGET(t *testing.T) {
	env := startHostile(t, "")
	before := len(env.up.requests())
	body := strings.Repeat(smuggled, (4<<20)/len(smuggled))
	a := sendRaw(t, env.rp.metrics, env.pki, "GET", []byte(fmt.Sprintf(
		"GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body)))
	if a.status() != http.StatusOK {
		t.Fatalf("status %d (%v), want 200", a.status(), a.err)
	}
	reqs := onlyMetricsSince(t, env.up, before, 1)
	if len(reqs) == 1 && reqs[0].ContentLength != 0 {
		t.Errorf("upstream got a body of %d bytes", reqs[0].ContentLength)
	}
	if d, closed := waitConnEnd(a.conn, a.started, 5*time.Second); !closed {
		t.Errorf("connection still open %v after a scrape with 4 MiB of unread body", d)
	}
}
