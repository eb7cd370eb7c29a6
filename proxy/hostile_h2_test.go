package proxy

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHostilePathsOverHTTP2 sends the request targets of the HTTP/1.1
// matrix as HTTP/2 :path values, byte for byte (C14, C15, C17, C18 over
// h2). A target HTTP/1.1 answers with 400 may instead get 404 or be
// refused at the protocol level (RST_STREAM, GOAWAY), as may one past the
// header limit; any other verdict must be the same, and the upstream sees
// only exact scrapes.
func TestHostilePathsOverHTTP2(t *testing.T) {
	t.Parallel()
	env := startHostile(t, "")
	upHost := strings.TrimPrefix(env.up.URL, "http://")
	tried := 0
	for _, tc := range hostilePathCases(upHost) {
		if tc.proto != "HTTP/1.1" || tc.method == "CONNECT" {
			continue // request-line framing and CONNECT do not carry over to h2
		}
		tried++
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			fields := getHeaders(tc.target)
			fields[0].Value = tc.method
			r := dialH2(t, env.rp.metrics, env.pki).roundTrip(fields)

			malformed := tc.want == 400 || tc.alt == 400
			ok := r.status == tc.want || tc.alt != 0 && r.status == tc.alt ||
				(malformed || tc.want == 431) && r.refused() || malformed && r.status == 404
			if !ok {
				t.Fatalf("got %v, want status %d", r, tc.want)
			}
			if r.status != http.StatusOK {
				noneSince(t, env.up, before, tc.name)
				return
			}
			reqs := onlyMetricsSince(t, env.up, before, 1)
			if len(reqs) == 1 && reqs[0].URL.RawQuery != tc.query {
				t.Errorf("upstream got query %q, want %q", truncate(reqs[0].URL.RawQuery, 60),
					truncate(tc.query, 60))
			}
		})
	}
	t.Logf("figures: %d :path values over HTTP/2", tried)
}

// TestHostilePseudoHeadersOverHTTP2 tries what only HTTP/2 can carry:
// repeated, missing or misplaced pseudo-headers, connection-specific
// headers, CONNECT and upper-case names. None reaches the upstream but a
// well-formed GET of exactly /metrics.
func TestHostilePseudoHeadersOverHTTP2(t *testing.T) {
	env := startHostile(t, "")
	f := func(kv ...string) []hpack.HeaderField {
		var out []hpack.HeaderField
		for i := 0; i < len(kv); i += 2 {
			out = append(out, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	base := []string{":method", "GET", ":scheme", "https", ":authority", "sidecar.test"}
	with := func(kv ...string) []hpack.HeaderField { return f(append(base, kv...)...) }
	upHost := strings.TrimPrefix(env.up.URL, "http://")

	tests := []struct {
		name   string
		fields []hpack.HeaderField
		want   int // 0: refused at the protocol level (RST_STREAM or GOAWAY)
	}{
		{"exact scrape", with(":path", "/metrics"), 200},
		{"second :path after the first", with(":path", "/metrics", ":path", "/debug/pprof/"), 0},
		{"second :path before the first", with(":path", "/debug/pprof/", ":path", "/metrics"),
			0},
		{"no :path", f(base...), 0},
		{"empty :path", with(":path", ""), 0},
		{":path without slash", with(":path", "metrics"), 0},
		{"pseudo-header after a regular one", f(":method", "GET", ":scheme", "https",
			"accept", "*/*", ":authority", "sidecar.test", ":path", "/metrics"), 0},
		{"unknown pseudo-header", with(":path", "/metrics", ":x", "y"), 0},
		{":protocol on GET", with(":path", "/metrics", ":protocol", "websocket"), 0},
		{"two :method", f(":method", "GET", ":method", "POST", ":scheme", "https",
			":authority", "sidecar.test", ":path", "/metrics"), 0},
		{":method POST", f(":method", "POST", ":scheme", "https", ":authority",
			"sidecar.test", ":path", "/metrics"), 405},
		{":method with a space", f(":method", "GET ", ":scheme", "https", ":authority",
			"sidecar.test", ":path", "/metrics"), 405},
		{"CONNECT to the upstream", f(":method", "CONNECT", ":authority", upHost), 404},
		{"CONNECT with a :path", f(":method", "CONNECT", ":authority", upHost,
			":path", "/metrics"), 0},
		{"upper-case header name", with(":path", "/metrics", "X-Upper", "1"), 0},
		{"connection header", with(":path", "/metrics", "connection", "keep-alive"), 400},
		{"transfer-encoding header", with(":path", "/metrics", "transfer-encoding",
			"chunked"), 400},
		{"te other than trailers", with(":path", "/metrics", "te", "gzip"), 400},
		{"upgrade header", with(":path", "/metrics", "upgrade", "h2c"), 400},
		{"NUL in a header value", with(":path", "/metrics", "x-a", "a\x00b"), 0},
		{"CR LF in a header value", with(":path", "/metrics",
			"x-a", "a\r\nGET /debug/pprof/ HTTP/1.1"), 0},
		{"colon in a header name", with(":path", "/metrics", "x:a", "b"), 0},
		{":authority of the upstream", f(":method", "GET", ":scheme", "http", ":authority",
			upHost, ":path", "/metrics"), 200},
		{"host header against :authority", with(":path", "/metrics", "host", "evil.example"),
			200},
		{"te trailers is allowed", with(":path", "/metrics", "te", "trailers"), 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			r := dialH2(t, env.rp.metrics, env.pki).roundTrip(tc.fields)
			if tc.want == 0 && !r.refused() || tc.want != 0 && r.status != tc.want {
				t.Fatalf("got %v, want %s", r, map[bool]string{true: "a protocol refusal",
					false: strconv.Itoa(tc.want)}[tc.want == 0])
			}
			if tc.want != http.StatusOK {
				noneSince(t, env.up, before, tc.name)
				return
			}
			reqs := onlyMetricsSince(t, env.up, before, 1)
			for _, rq := range reqs {
				if rq.Host != upHost {
					t.Errorf("upstream got Host %q, want %q", rq.Host, upHost)
				}
				if rq.Header.Get("Te") != "" || rq.Header.Get("Connection") != "" {
					t.Errorf("a hop-by-hop header reached the upstream: %v", rq.Header)
				}
			}
		})
	}
	t.Logf("figures: %d pseudo-header inputs over HTTP/2", len(tests))
}

// gate is an upstream handler that holds scrapes until released, or until
// the proxy cancels them.
type gate struct {
	once    sync.Once
	release chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case <-g.release:
		fmt.Fprintln(w, "gated_up 1")
	case <-r.Context().Done():
	}
}

// TestHostileHTTP2StreamLimit opens more streams at once than the server
// allows, while the upstream holds every scrape: streams past the limit
// are refused, no more than the limit reach the upstream, and each one
// admitted completes once the upstream answers.
func TestHostileHTTP2StreamLimit(t *testing.T) {
	g := newGate()
	up := newFaultUpstream(t, g.serve)
	t.Cleanup(g.open)
	pki := newTestPKI(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL(), hostileConfig))
	base := settledGoroutines()

	c := dialH2(t, rp.metrics, pki)
	limit := c.maxStreams()
	if limit > 256 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS is %d; a scraper needs a few", limit)
	}
	extra := 20
	var ids []uint32
	for range limit + extra {
		id, err := c.open(getHeaders("/metrics"))
		if err != nil {
			t.Fatalf("opening stream %d: %v", id, err)
		}
		ids = append(ids, id)
	}
	// Wait until the admitted scrapes are at the upstream, then let them
	// answer.
	deadline := time.Now().Add(5 * time.Second)
	for up.running.Load() < int64(limit) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	atUpstream := int(up.running.Load())
	g.open()
	res := c.await(10*time.Second, ids...)

	ok, refused := 0, 0
	for _, r := range res {
		switch {
		case r.status == http.StatusOK && r.ended:
			ok++
		case r.refused():
			refused++
		default:
			t.Errorf("stream ended otherwise: %v", r)
		}
	}
	if atUpstream > limit || len(up.requests()) > limit {
		t.Errorf("upstream held %d scrapes at once and saw %d, beyond the limit of %d",
			atUpstream, len(up.requests()), limit)
	}
	if ok != len(up.requests()) {
		t.Errorf("%d streams completed but the upstream saw %d scrapes", ok,
			len(up.requests()))
	}
	if refused < extra {
		t.Errorf("only %d of %d streams past the limit were refused", refused, extra)
	}
	t.Logf("figures: limit %d, opened %d, completed %d, refused %d", limit, len(ids), ok,
		refused)

	_ = c.conn.Close()
	checkScrapes(t, rp.metrics, pki)
	up.waitIdle(t, 5*time.Second)
	waitGoroutines(t, base, 10*time.Second, up)
}

// TestHostileHTTP2RapidReset opens streams and resets them at once, 10,000
// times (CVE-2023-44487). The server stays healthy: a valid scrape works
// afterwards, every scrape the resets started at the upstream is
// cancelled, and goroutines return to their baseline.
func TestHostileHTTP2RapidReset(t *testing.T) {
	tests := []struct {
		name string
		hang bool // the upstream holds every scrape until cancelled
	}{
		{"upstream answers", false},
		{"upstream hangs", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hang atomic.Bool
			hang.Store(tc.hang)
			up := newFaultUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if hang.Load() {
					<-r.Context().Done()
					return
				}
				fmt.Fprintln(w, "up 1")
			})
			pki := newTestPKI(t)
			rp := startProxy(t, pki.dir, baseConfig(pki, up.URL(), hostileConfig))
			base := settledGoroutines()

			const total = 10000
			sent, conns, completed := rapidReset(t, rp.metrics, pki, total)
			t.Logf("figures: %d streams opened and reset over %d connections; the upstream "+
				"saw %d; %d responses completed", sent, conns, len(up.requests()), completed)
			if sent < total {
				t.Errorf("only %d of %d streams could be sent", sent, total)
			}
			if n := len(up.requests()); n > sent {
				t.Errorf("upstream saw %d requests for %d streams", n, sent)
			}
			if tc.hang && completed > 0 {
				t.Errorf("%d responses completed while the upstream hung", completed)
			}
			up.waitIdle(t, 5*time.Second)
			hang.Store(false)
			checkScrapes(t, rp.metrics, pki)
			waitGoroutines(t, base, 10*time.Second, up)
		})
	}
}

// rapidReset sends total HEADERS+RST_STREAM pairs for GET /metrics, on as
// many connections as the server makes it use, and returns how many pairs
// it sent, on how many connections, and how many responses completed
// anyway.
func rapidReset(t testing.TB, addr string, pki *testPKI, total int) (sent, conns, completed int) {
	t.Helper()
	for sent < total && conns < 200 {
		c := dialH2(t, addr, pki)
		conns++
		// Read in the background, so that the server never blocks on us.
		// Only this goroutine counts until done is closed.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				f, err := c.fr.ReadFrame()
				if err != nil {
					return
				}
				if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamEnded() ||
					isEndedData(f) {
					completed++
				}
			}
		}()
		for sent < total {
			c.block.Reset()
			for _, f := range getHeaders("/metrics") {
				_ = c.enc.WriteField(f)
			}
			id := c.next
			c.next += 2
			err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
				BlockFragment: c.block.Bytes(), EndStream: true, EndHeaders: true})
			if err == nil {
				err = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			if err == nil && id%64 == 1 {
				err = c.bw.Flush()
			}
			if err != nil {
				break // the server closed the connection: open another
			}
			sent++
		}
		_ = c.bw.Flush()
		// Give the server a moment to answer what it will, then hang up.
		time.Sleep(200 * time.Millisecond)
		_ = c.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		_ = c.bw.Flush()
		_ = c.conn.Close()
		<-done
	}
	return sent, conns, completed
}

func isEndedData(f http2.Frame) bool {
	d, ok := f.(*http2.DataFrame)
	return ok && d.StreamEnded()
}

// TestHostileHTTP2OversizedHeaders sends header lists past the 32 KiB
// limit over HTTP/2, and a CONTINUATION flood that never ends its header
// block (CVE-2023-45288). The server answers 431 or ends the connection,
// the upstream sees nothing, and the flood is cut off long before it is
// all sent.
func TestHostileHTTP2OversizedHeaders(t *testing.T) {
	env := startHostile(t, "")
	base := settledGoroutines()
	for _, tc := range []struct{ n, size int }{{1, 40 << 10}, {1, 1 << 20}, {64, 1 << 10}} {
		t.Run(fmt.Sprintf("%d headers of %d KiB", tc.n, tc.size>>10), func(t *testing.T) {
			before := len(env.up.requests())
			fields := getHeaders("/metrics")
			for i := range tc.n {
				fields = append(fields, hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i),
					Value: strings.Repeat("b", tc.size)})
			}
			c := dialH2(t, env.rp.metrics, env.pki)
			defer c.conn.Close()
			r := c.roundTrip(fields)
			t.Logf("%v", r)
			if r.status != http.StatusRequestHeaderFieldsTooLarge && !r.refused() {
				t.Errorf("got %v, want 431 or a refusal", r)
			}
			noneSince(t, env.up, before, "an oversized header list")
		})
	}

	t.Run("CONTINUATION flood", func(t *testing.T) {
		before := len(env.up.requests())
		c := dialH2(t, env.rp.metrics, env.pki)
		c.block.Reset()
		for _, f := range getHeaders("/metrics") {
			_ = c.enc.WriteField(f)
		}
		id := c.next
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
			BlockFragment: c.block.Bytes(), EndStream: true}); err != nil {
			t.Fatal(err)
		}
		// Each fragment is a literal header of 16 KiB, never indexed.
		var frag bytes.Buffer
		e := hpack.NewEncoder(&frag)
		_ = e.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 16000),
			Sensitive: true})
		const limit = 64 << 20
		written := 0
		start := time.Now()
		var werr error
		for written < limit && werr == nil {
			werr = c.fr.WriteContinuation(id, false, frag.Bytes())
			if werr == nil {
				werr = c.bw.Flush()
			}
			written += frag.Len()
		}
		if werr == nil {
			t.Errorf("the server took %d MiB of CONTINUATION frames without closing",
				written>>20)
		}
		t.Logf("figures: the server closed after %d KiB of CONTINUATION frames, %v",
			written>>10, time.Since(start).Round(time.Millisecond))
		_ = c.conn.Close()
		noneSince(t, env.up, before, "a CONTINUATION flood")
	})

	checkScrapes(t, env.rp.metrics, env.pki)
	waitGoroutines(t, base, 10*time.Second, env.up)
}
