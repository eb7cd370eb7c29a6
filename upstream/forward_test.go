package upstream_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

const textBody = "# TYPE up gauge\nup 1\n"

func textHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, textBody)
}

// TestForwardTarget checks that the daemon always sees the fixed path, and
// the raw query byte for byte (C18), whatever the scraper's request target.
func TestForwardTarget(t *testing.T) {
	h, seenCh := recordingHandler(textHandler)
	addr := startTCPUpstream(t, h)
	fe := startFrontend(t, newForwarder(t, addr))

	tests := []struct {
		name   string
		target string
		want   string
	}{
		{name: "plain", target: "/metrics", want: "/metrics"},
		{name: "C18 collect params", target: "/metrics?collect[]=cpu&collect[]=mem",
			want: "/metrics?collect[]=cpu&collect[]=mem"},
		{name: "C18 empty query keeps its question mark", target: "/metrics?",
			want: "/metrics?"},
		{name: "C18 traversal in the query", target: "/metrics?x=/../debug/pprof/heap",
			want: "/metrics?x=/../debug/pprof/heap"},
		{name: "C18 bad escape in the query", target: "/metrics?%zz", want: "/metrics?%zz"},
		{name: "encoded characters in the query", target: "/metrics?a=%2F%3F%23&b=%41",
			want: "/metrics?a=%2F%3F%23&b=%41"},
		{name: "second question mark", target: "/metrics??a", want: "/metrics??a"},
		{name: "request path is ignored", target: "/debug/pprof/heap", want: "/metrics"},
		{name: "request path with dot-segments is ignored",
			target: "/metrics/../debug/pprof/heap?debug=1", want: "/metrics?debug=1"},
		{name: "request path with encoded slash is ignored", target: "/x%2F..%2Fy?a",
			want: "/metrics?a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := fe.do(t, http.MethodGet, tc.target, nil)
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != textBody {
				t.Fatalf("status %d, body %q, err %v", resp.StatusCode, body, err)
			}
			got := <-seenCh
			if got.requestURI != tc.want {
				t.Errorf("upstream saw %q, want %q", got.requestURI, tc.want)
			}
			if got.method != http.MethodGet {
				t.Errorf("upstream saw method %q", got.method)
			}
			if got.host != addr.Host {
				t.Errorf("upstream saw Host %q, want %q", got.host, addr.Host)
			}
			if res := fe.result(t); res.Failure != "" || res.Bytes != int64(len(textBody)) {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

// TestForwardConfiguredPath checks that the path comes from Options.
func TestForwardConfiguredPath(t *testing.T) {
	h, seenCh := recordingHandler(textHandler)
	addr := startTCPUpstream(t, h)
	f := newForwarder(t, addr, func(o *upstream.Options) { o.Path = "/internal/prom" })

	r := httptest.NewRequest(http.MethodGet, "/metrics?a=1", nil)
	res := f.Forward(httptest.NewRecorder(), r, "a=1", false)
	if res.Failure != "" || res.Status != http.StatusOK {
		t.Fatalf("result = %+v", res)
	}
	if got := (<-seenCh).requestURI; got != "/internal/prom?a=1" {
		t.Errorf("upstream saw %q, want /internal/prom?a=1", got)
	}
}

// TestForwardUnixSocket forwards to a diag server on a unix socket.
func TestForwardUnixSocket(t *testing.T) {
	h, seenCh := recordingHandler(textHandler)
	addr := startUnixUpstream(t, h)
	fe := startFrontend(t, newForwarder(t, addr))

	resp, body, err := fe.do(t, http.MethodGet, "/metrics?name[]=up", nil)
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != textBody {
		t.Fatalf("status %d, body %q, err %v", resp.StatusCode, body, err)
	}
	got := <-seenCh
	if got.requestURI != "/metrics?name[]=up" || got.host != "localhost" {
		t.Errorf("upstream saw %q with Host %q", got.requestURI, got.host)
	}
}

// TestForwardRequestHeaders checks what reaches the daemon: end-to-end
// headers unchanged, hop-by-hop ones and those named in Connection gone.
func TestForwardRequestHeaders(t *testing.T) {
	h, seenCh := recordingHandler(textHandler)
	f := newForwarder(t, startTCPUpstream(t, h))

	accept := "application/openmetrics-text;version=1.0.0;q=0.5," +
		"text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
	passed := http.Header{
		"Accept":                              {accept},
		"Accept-Encoding":                     {"gzip"},
		"User-Agent":                          {"Prometheus/3.5.0"},
		"X-Prometheus-Scrape-Timeout-Seconds": {"9.5"},
		"Authorization":                       {"Bearer abc"},
		"X-Multi":                             {"one", "two"},
	}
	dropped := http.Header{
		"Connection":          {"keep-alive, X-Hop-One", "x-hop-two"},
		"X-Hop-One":           {"1"},
		"X-Hop-Two":           {"2"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Connection":    {"keep-alive"},
		"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
		"Te":                  {"trailers"},
		"Trailer":             {"X-Checksum"},
		"Upgrade":             {"h2c"},
		"Content-Length":      {"0"},
	}

	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header = http.Header{}
	for _, src := range []http.Header{passed, dropped} {
		for k, v := range src {
			r.Header[k] = slices.Clone(v)
		}
	}
	res := f.Forward(httptest.NewRecorder(), r, "", false)
	if res.Failure != "" {
		t.Fatalf("result = %+v", res)
	}
	got := (<-seenCh).header

	for k, want := range passed {
		if !slices.Equal(got[k], want) {
			t.Errorf("upstream saw %s %q, want %q", k, got[k], want)
		}
	}
	for k := range dropped {
		if v, ok := got[k]; ok {
			t.Errorf("upstream saw hop-by-hop %s %q", k, v)
		}
	}
	if !slices.Equal(r.Header["X-Hop-One"], []string{"1"}) {
		t.Error("Forward changed the inbound request's headers")
	}
}

// TestForwardResponseHeaders checks what reaches the scraper: the daemon's
// end-to-end headers, without hop-by-hop ones and those named in
// Connection.
func TestForwardResponseHeaders(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("Upgrade", "foo")
		w.Header().Set("X-End-To-End", "kept")
		w.Header()["Cache-Control"] = []string{"no-cache", "no-store"}
		_, _ = io.WriteString(w, textBody)
	})
	addr := startTCPUpstream(t, h)

	// Precondition: the daemon really sends the hop-by-hop headers.
	direct, err := http.Get("http://" + addr.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	direct.Body.Close()
	for _, k := range []string{"Connection", "X-Resp-Hop", "Keep-Alive", "Upgrade"} {
		if direct.Header.Get(k) == "" {
			t.Fatalf("precondition: the daemon does not send %s", k)
		}
	}

	fe := startFrontend(t, newForwarder(t, addr))
	resp, body, err := fe.do(t, http.MethodGet, "/metrics", nil)
	if err != nil || string(body) != textBody {
		t.Fatalf("body %q, err %v", body, err)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("scraper got hop-by-hop %s %q", k, v)
		}
	}
	if strings.Contains(resp.Header.Get("Connection"), "X-Resp-Hop") {
		t.Errorf("scraper got the daemon's Connection header %q", resp.Header.Get("Connection"))
	}
	if got := resp.Header.Get("X-End-To-End"); got != "kept" {
		t.Errorf("X-End-To-End = %q, want kept", got)
	}
	if got := resp.Header["Cache-Control"]; !slices.Equal(got, []string{"no-cache", "no-store"}) {
		t.Errorf("Cache-Control = %q", got)
	}
}

const openMetricsBody = "# TYPE up gauge\nup 1\n# EOF\n"

// negotiatingHandler answers like a client_golang daemon: OpenMetrics when
// asked for, gzip when accepted (with a fixed, precomputed body).
func negotiatingHandler(t testing.TB) (http.HandlerFunc, []byte) {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, textBody)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gzipped := gz.Bytes()

	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept"), "application/openmetrics-text") {
			w.Header().Set("Content-Type",
				"application/openmetrics-text; version=1.0.0; charset=utf-8")
			_, _ = io.WriteString(w, openMetricsBody)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(gzipped)
			return
		}
		_, _ = io.WriteString(w, textBody)
	}, gzipped
}

// TestForwardNegotiation covers C19 and C20: the scraper's Accept and
// Accept-Encoding reach the daemon, and the daemon's choice comes back
// byte-identical, compressed bodies included.
func TestForwardNegotiation(t *testing.T) {
	h, gzipped := negotiatingHandler(t)
	addr := startTCPUpstream(t, h)
	fe := startFrontend(t, newForwarder(t, addr))

	tests := []struct {
		name      string
		header    http.Header
		wantType  string
		wantEnc   string
		wantBody  []byte
		wantBytes int
	}{
		{name: "C19a OpenMetrics preferred", header: http.Header{"Accept": {
			"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}},
			wantType: "application/openmetrics-text; version=1.0.0; charset=utf-8",
			wantBody: []byte(openMetricsBody)},
		{name: "C19b no Accept",
			wantType: "text/plain; version=0.0.4; charset=utf-8", wantBody: []byte(textBody)},
		{name: "C20 gzip", header: http.Header{"Accept-Encoding": {"gzip"}},
			wantType: "text/plain; version=0.0.4; charset=utf-8", wantEnc: "gzip",
			wantBody: gzipped},
		{name: "C20 identity", header: http.Header{"Accept-Encoding": {"identity"}},
			wantType: "text/plain; version=0.0.4; charset=utf-8", wantBody: []byte(textBody)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := fe.do(t, http.MethodGet, "/metrics", tc.header)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, err %v", resp.StatusCode, err)
			}
			if !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tc.wantType)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tc.wantEnc {
				t.Errorf("Content-Encoding = %q, want %q", got, tc.wantEnc)
			}
			if got := resp.Header["Vary"]; !slices.Equal(got, []string{"Accept-Encoding"}) {
				t.Errorf("Vary = %q, want [Accept-Encoding]", got)
			}
			if res := fe.result(t); res.Bytes != int64(len(tc.wantBody)) {
				t.Errorf("result counts %d bytes, want %d", res.Bytes, len(tc.wantBody))
			}
		})
	}
}

// TestForwardHEAD checks that HEAD reaches the daemon as HEAD and that its
// headers, Content-Length included, come back with no body.
func TestForwardHEAD(t *testing.T) {
	h, seenCh := recordingHandler(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Content-Length", "1234")
		w.WriteHeader(http.StatusOK)
	})
	fe := startFrontend(t, newForwarder(t, startTCPUpstream(t, h)))

	resp, body, err := fe.do(t, http.MethodHead, "/metrics?x", nil)
	if err != nil || resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("status %d, body %q, err %v", resp.StatusCode, body, err)
	}
	if resp.ContentLength != 1234 {
		t.Errorf("Content-Length = %d, want 1234", resp.ContentLength)
	}
	if got := <-seenCh; got.method != http.MethodHead || got.requestURI != "/metrics?x" {
		t.Errorf("upstream saw %s %s", got.method, got.requestURI)
	}
	if res := fe.result(t); res.Failure != "" || res.Bytes != 0 || res.Status != 200 {
		t.Errorf("result = %+v", res)
	}
}

// TestForwardUpstreamStatus checks that the daemon's own error statuses
// pass through as answers, not as forwarding failures.
func TestForwardUpstreamStatus(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusInternalServerError,
		http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "daemon says no", status)
			})
			fe := startFrontend(t, newForwarder(t, startTCPUpstream(t, h)))

			resp, body, err := fe.do(t, http.MethodGet, "/metrics", nil)
			if err != nil || resp.StatusCode != status || string(body) != "daemon says no\n" {
				t.Fatalf("status %d, body %q, err %v", resp.StatusCode, body, err)
			}
			if res := fe.result(t); res.Failure != "" || res.Status != status {
				t.Errorf("result = %+v", res)
			}
		})
	}
}
