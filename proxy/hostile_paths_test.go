package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// pathCase is one request line sent byte for byte to the metrics
// listener.
type pathCase struct {
	name   string
	method string
	target string
	proto  string // "" means HTTP/1.1
	want   int    // the status the proxy must answer with
	alt    int    // another acceptable status, or 0
	query  string // on 200: the raw query the upstream must see
}

// hostilePathCases returns the request targets of cases C14, C17 and C18
// and their relatives, beyond those of TestOnlyTheMetricsPathPasses. upHost
// is the upstream's host:port, for targets that name it.
func hostilePathCases(upHost string) []pathCase {
	long := strings.Repeat("a", 70<<10)
	cases := []pathCase{
		// Dot-segments, plain and encoded (C14).
		{name: "C14 trailing dot", target: "/metrics/.", want: 404},
		{name: "C14 leading dot", target: "/./metrics", want: 404},
		{name: "C14 back to itself", target: "/metrics/../metrics", want: 404},
		{name: "C14 other dir and back", target: "/x/../metrics", want: 404},
		{name: "C14 encoded dot-dot lower", target: "/metrics/%2e%2e/healthz", want: 404},
		{name: "C14 encoded dot-dot upper", target: "/metrics/%2E%2E/healthz", want: 404},
		{name: "C14 mixed dot-dot", target: "/.%2e/metrics", want: 404},
		{name: "C14 encoded dot", target: "/%2e/metrics", want: 404},
		{name: "C14 dot-dot semicolon", target: "/metrics/..;/debug/pprof/", want: 404},
		{name: "C14 dot-dot encoded slash", target: "/metrics/..%2fdebug/pprof/heap", want: 404},
		{name: "C14 backslashes", target: `/metrics\..\debug\pprof`, want: 404},
		{name: "C14 many dot-dots", target: "/metrics" + strings.Repeat("/..", 2000), want: 404},

		// Percent-encoded slashes and delimiters, both hex cases (C15).
		{name: "encoded slash after lower", target: "/metrics%2f", want: 404},
		{name: "encoded slash after upper", target: "/metrics%2F", want: 404},
		{name: "encoded slash before lower", target: "/%2fmetrics", want: 404},
		{name: "encoded slash before upper", target: "/%2Fmetrics", want: 404},
		{name: "encoded question mark lower", target: "/metrics%3f", want: 404},
		{name: "encoded question mark upper", target: "/metrics%3Fx=1", want: 404},
		{name: "encoded hash lower", target: "/metrics%23", want: 404},
		{name: "encoded hash upper", target: "/metrics%23frag", want: 404},
		{name: "encoded semicolon", target: "/metrics%3B", want: 404},
		{name: "path parameter", target: "/metrics;jsessionid=1", want: 404},
		{name: "encoded NUL", target: "/metrics%00", want: 404},
		{name: "encoded space", target: "/metrics%20", want: 404},
		{name: "encoded backslash", target: "/metrics%5C", want: 404},
		{name: "literal hash", target: "/metrics#frag", want: 404},
		{name: "encoded letter upper hex", target: "/%6Detrics", want: 404},
		{name: "encoded last letter", target: "/metric%73", want: 404},
		{name: "double-encoded letter", target: "/%256detrics", want: 404},
		{name: "bad escape in path", target: "/metrics%zz", want: 400},
		{name: "truncated escape in path", target: "/metrics%", want: 400},

		// Slashes and case.
		{name: "two trailing slashes", target: "/metrics//", want: 404},
		{name: "three leading slashes", target: "///metrics", want: 404},
		{name: "trailing slash with query", target: "/metrics/?x=1", want: 404},
		{name: "capital M", target: "/Metrics", want: 404},
		{name: "mixed case", target: "/mEtRiCs", want: 404},
		{name: "capital last letter", target: "/metricS", want: 404},

		// Absolute and other forms of the request target.
		{name: "absolute http", target: "http://sidecar.test/metrics", want: 404},
		{name: "absolute upper-case scheme", target: "HTTPS://sidecar.test/metrics", want: 404},
		{name: "absolute other host", target: "https://evil.example/metrics", want: 404},
		{name: "absolute with port and query", target: "https://sidecar.test:443/metrics?x=1",
			want: 404},
		{name: "absolute naming the upstream", target: "http://" + upHost + "/metrics",
			want: 404},
		{name: "absolute with userinfo", target: "https://u@sidecar.test/metrics", want: 404},
		{name: "scheme-relative", target: "//sidecar.test/metrics", want: 404},
		{name: "no leading slash", target: "metrics", want: 400},
		{name: "asterisk with GET", target: "*", want: 404, alt: 400},

		// Methods (C17 needs no other method to reach the daemon).
		{name: "CONNECT authority", method: "CONNECT", target: "sidecar.test:443", want: 404,
			alt: 400},
		{name: "CONNECT to the upstream", method: "CONNECT", target: upHost, want: 404, alt: 400},
		{name: "CONNECT metrics path", method: "CONNECT", target: "/metrics", want: 405},
		{name: "TRACE", method: "TRACE", target: "/metrics", want: 405},
		{name: "PUT", method: "PUT", target: "/metrics", want: 405},
		{name: "PATCH", method: "PATCH", target: "/metrics", want: 405},
		{name: "lower-case get", method: "get", target: "/metrics", want: 405},
		{name: "extension method", method: "M-SEARCH", target: "/metrics", want: 405},
		{name: "OPTIONS * on a path-like target", method: "OPTIONS", target: "*/metrics",
			want: 404, alt: 400},
		{name: "HTTP/2 preface over HTTP/1.1", method: "PRI", target: "*", proto: "HTTP/2.0",
			want: 404, alt: 505},

		// Request-line framing.
		{name: "HTTP/1.0 without Host", target: "/metrics", proto: "HTTP/1.0", want: 200},
		{name: "HTTP/2.0 on HTTP/1.1", target: "/metrics", proto: "HTTP/2.0", want: 505,
			alt: 400},
		{name: "HTTP/0.9 style", target: "/metrics", proto: "-", want: 400},
		{name: "extra word after version", target: "/metrics", proto: "HTTP/1.1 x", want: 400},
		{name: "second target", target: "/metrics /debug/pprof/", want: 400},
		{name: "leading space in target", target: " /metrics", want: 400},

		// Length: beyond the 32 KiB header limit (C17: no 200 either).
		{name: "path over 64 KiB", target: "/" + long, want: 431, alt: 414},
		{name: "metrics path with query over 64 KiB", target: "/metrics?" + long, want: 431,
			alt: 414},
		{name: "metrics path plus 64 KiB", target: "/metrics/" + long, want: 431, alt: 414},
		{name: "8 KiB path under the limit", target: "/metrics/" + long[:8<<10], want: 404},
		{name: "C18 16 KiB query passes whole", target: "/metrics?q=" + long[:16<<10],
			want: 200, query: "q=" + long[:16<<10]},

		// NUL, control bytes and invalid UTF-8.
		{name: "NUL after path", target: "/metrics\x00", want: 400},
		{name: "NUL inside path", target: "/met\x00rics", want: 400},
		{name: "control byte", target: "/metrics\x01", want: 400},
		{name: "DEL", target: "/metrics\x7f", want: 400},
		{name: "escape sequence", target: "/metrics\x1b[2J", want: 400},
		{name: "carriage return", target: "/metrics\r/x", want: 400},
		{name: "tab", target: "/metrics\t", want: 400},
		{name: "NUL in query", target: "/metrics?\x00", want: 400},
		{name: "invalid UTF-8 in path", target: "/metrics\xff", want: 404},
		{name: "invalid UTF-8 sequence", target: "/\xc3\x28metrics", want: 404},
		{name: "encoded invalid UTF-8", target: "/metrics%ff", want: 404},
		{name: "overlong slash", target: "/metrics%c0%af", want: 404},
		{name: "C18 invalid UTF-8 in query passes as is", target: "/metrics?\xff\xfe", want: 200,
			query: "\xff\xfe"},
		{name: "C18 overlong dots in query pass as is", target: "/metrics?%c0%ae%c0%ae/",
			want: 200, query: "%c0%ae%c0%ae/"},
		{name: "C18 encoded hash in query", target: "/metrics?a=%23&b=%2F", want: 200,
			query: "a=%23&b=%2F"},
	}
	for i := range cases {
		if cases[i].method == "" {
			cases[i].method = "GET"
		}
		if cases[i].proto == "" {
			cases[i].proto = "HTTP/1.1"
		}
	}
	return cases
}

// request renders c as the bytes the client sends.
func (c pathCase) request() string {
	line := c.method + " " + c.target
	if c.proto != "-" {
		line += " " + c.proto
	}
	if c.proto == "HTTP/1.0" {
		return line + "\r\n\r\n"
	}
	return line + "\r\nHost: sidecar.test\r\n\r\n"
}

// TestHostilePathsOverHTTP1 covers C14, C15, C17 and C18 with request
// targets written byte for byte over real TLS: every target but the exact
// metrics path is refused with the right status, and the upstream, which
// records everything it gets, sees nothing of it. Accepted targets reach
// it as exactly /metrics with the raw query unchanged.
func TestHostilePathsOverHTTP1(t *testing.T) {
	t.Parallel()
	env := startHostile(t, "")
	upHost := strings.TrimPrefix(env.up.URL, "http://")
	cases := hostilePathCases(upHost)
	refusedBefore := ownMetric(t, env, `mtls_metrics_proxy_refused_requests_total{reason="path"}`)

	notFound := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			a := sendRaw(t, env.rp.metrics, env.pki, tc.method, []byte(tc.request()))
			if got := a.status(); got != tc.want && (tc.alt == 0 || got != tc.alt) {
				t.Fatalf("status %d (err %v), want %d; request %q", got, a.err, tc.want,
					truncate(tc.request(), 120))
			}
			t.Logf("%s: status %d", tc.name, a.status())
			if a.status() == 404 {
				notFound++
			}
			if loc := a.resp.Header.Get("Location"); loc != "" {
				t.Errorf("redirect to %q", loc)
			}
			if a.status() != http.StatusOK {
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

	// Every 404 was counted as a refusal by path.
	after := ownMetric(t, env, `mtls_metrics_proxy_refused_requests_total{reason="path"}`)
	if int(after-refusedBefore) != notFound {
		t.Errorf("refused_requests_total{reason=\"path\"} rose by %v, want %d",
			after-refusedBefore, notFound)
	}
	t.Logf("figures: %d request targets over HTTP/1.1, %d answered 404", len(cases), notFound)
}

// ownMetric scrapes the proxy's own metrics and returns one series.
func ownMetric(t testing.TB, env *hostileEnv, series string) float64 {
	t.Helper()
	c := tlsClient(env.pki.ca.Pool(), env.pki.client.TLSCertificate())
	defer c.CloseIdleConnections()
	status, body, err := get(t, c, "https://"+env.rp.metrics+"/proxy/metrics")
	if err != nil || status != http.StatusOK {
		t.Fatalf("own metrics: %d %v", status, err)
	}
	return metricValue(t, body, series)
}

// TestHostileQueryNeverChangesThePath covers C18 with queries that look
// like paths, fragments or further requests: each is forwarded as a query
// of exactly /metrics, byte for byte.
func TestHostileQueryNeverChangesThePath(t *testing.T) {
	env := startHostile(t, "")
	queries := []string{
		"/../debug/pprof/heap",
		"x=1&x=2&%3F=%2F",
		"?",
		"??x",
		"a=b/../../healthz",
		"u=http://evil.example/metrics",
		"%2e%2e%2f%2e%2e%2fdebug",
		"a=%0d%0aX-Injected:%201",
		";a=b",
		"" + strings.Repeat("&", 512),
	}
	for i, q := range queries {
		t.Run(fmt.Sprintf("query %d %s", i, url.PathEscape(truncate(q, 24))), func(t *testing.T) {
			before := len(env.up.requests())
			a := sendRaw(t, env.rp.metrics, env.pki, "GET",
				[]byte("GET /metrics?"+q+" HTTP/1.1\r\nHost: sidecar.test\r\n\r\n"))
			if a.status() != http.StatusOK {
				t.Fatalf("status %d (%v), want 200", a.status(), a.err)
			}
			reqs := onlyMetricsSince(t, env.up, before, 1)
			if len(reqs) == 1 {
				if reqs[0].URL.RawQuery != q {
					t.Errorf("upstream query %q, want %q", reqs[0].URL.RawQuery, q)
				}
				if reqs[0].Header.Get("X-Injected") != "" {
					t.Error("a header was injected through the query")
				}
			}
		})
	}
}
