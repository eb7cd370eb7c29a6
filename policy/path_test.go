package policy

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
)

var metricsRule = PathRule{Path: "/metrics"}

func TestDecide(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		uri       string
		want      Verdict
		wantQuery string
		wantHasQ  bool
	}{
		// The one path, as Prometheus sends it.
		{name: "exact GET", method: "GET", uri: "/metrics", want: Forward},
		{name: "exact HEAD", method: "HEAD", uri: "/metrics", want: Forward},

		// C18: the query passes byte for byte and never changes the path.
		{name: "C18 collect params", method: "GET", uri: "/metrics?collect[]=cpu&collect[]=mem",
			want: Forward, wantQuery: "collect[]=cpu&collect[]=mem", wantHasQ: true},
		{name: "C18 empty query keeps its question mark", method: "GET", uri: "/metrics?",
			want: Forward, wantQuery: "", wantHasQ: true},
		{name: "C18 traversal in the query", method: "GET", uri: "/metrics?x=/../debug/pprof/heap",
			want: Forward, wantQuery: "x=/../debug/pprof/heap", wantHasQ: true},
		{name: "C18 bad escape in the query", method: "GET", uri: "/metrics?%zz",
			want: Forward, wantQuery: "%zz", wantHasQ: true},
		{name: "second question mark stays in the query", method: "HEAD", uri: "/metrics??a=b",
			want: Forward, wantQuery: "?a=b", wantHasQ: true},
		{name: "encoded slash in the query", method: "GET", uri: "/metrics?a=%2F..%2Fx",
			want: Forward, wantQuery: "a=%2F..%2Fx", wantHasQ: true},

		// C14: dot-segments.
		{name: "C14 traversal to pprof", method: "GET", uri: "/metrics/../debug/pprof/heap",
			want: NotFound},
		{name: "C14 traversal to healthz", method: "GET", uri: "/metrics/../healthz",
			want: NotFound},
		{name: "C14 dot segment", method: "GET", uri: "/metrics/./", want: NotFound},
		{name: "C14 trailing dot-dot", method: "GET", uri: "/metrics/..", want: NotFound},
		{name: "leading dot segment", method: "GET", uri: "/./metrics", want: NotFound},
		{name: "traversal into metrics", method: "GET", uri: "/foo/../metrics", want: NotFound},

		// Encoded slashes and dots, both hex cases.
		{name: "encoded slash upper", method: "GET", uri: "%2Fmetrics", want: NotFound},
		{name: "encoded slash lower", method: "GET", uri: "%2fmetrics", want: NotFound},
		{name: "encoded slash inside upper", method: "GET", uri: "/metrics%2F..%2Fhealthz",
			want: NotFound},
		{name: "encoded slash inside lower", method: "GET", uri: "/metrics%2f..%2fhealthz",
			want: NotFound},
		{name: "encoded dots upper", method: "GET", uri: "/metrics/%2E%2E/healthz",
			want: NotFound},
		{name: "encoded dots lower", method: "GET", uri: "/metrics/%2e%2e/healthz",
			want: NotFound},
		{name: "encoded letter", method: "GET", uri: "/%6detrics", want: NotFound},
		{name: "encoded letter upper hex", method: "GET", uri: "/%6Detrics", want: NotFound},
		{name: "encoded question mark", method: "GET", uri: "/metrics%3F", want: NotFound},
		{name: "encoded hash", method: "GET", uri: "/metrics%23", want: NotFound},
		{name: "encoded NUL", method: "GET", uri: "/metrics%00", want: NotFound},

		// Other spellings of the path.
		{name: "double slash", method: "GET", uri: "//metrics", want: NotFound},
		{name: "trailing slash", method: "GET", uri: "/metrics/", want: NotFound},
		{name: "upper case", method: "GET", uri: "/METRICS", want: NotFound},
		{name: "path parameter", method: "GET", uri: "/metrics;x", want: NotFound},
		{name: "backslash", method: "GET", uri: `\metrics`, want: NotFound},
		{name: "fragment", method: "GET", uri: "/metrics#x", want: NotFound},
		{name: "longer path", method: "GET", uri: "/metricsx", want: NotFound},
		{name: "shorter path", method: "GET", uri: "/metric", want: NotFound},
		{name: "empty target", method: "GET", uri: "", want: NotFound},
		{name: "only a query", method: "GET", uri: "?/metrics", want: NotFound},
		{name: "absolute form", method: "GET", uri: "https://h/metrics", want: NotFound},
		{name: "absolute form http", method: "GET", uri: "http://h/metrics?a", want: NotFound},
		{name: "asterisk form", method: "OPTIONS", uri: "*", want: NotFound},
		{name: "CONNECT authority form", method: "CONNECT", uri: "h:443", want: NotFound},
		{name: "CONNECT to the metrics path", method: "CONNECT", uri: "/metrics",
			want: MethodNotAllowed},

		// C17: the daemon's other routes.
		{name: "C17 pprof index", method: "GET", uri: "/debug/pprof/", want: NotFound},
		{name: "C17 pprof profile", method: "GET", uri: "/debug/pprof/profile?seconds=1",
			want: NotFound},
		{name: "C17 expvar", method: "GET", uri: "/debug/vars", want: NotFound},
		{name: "C17 healthz", method: "GET", uri: "/healthz", want: NotFound},
		{name: "C17 root", method: "GET", uri: "/", want: NotFound},
		{name: "path wins over method", method: "POST", uri: "/healthz", want: NotFound},

		// Other methods on the right path: 405.
		{name: "POST", method: "POST", uri: "/metrics", want: MethodNotAllowed},
		{name: "PUT", method: "PUT", uri: "/metrics", want: MethodNotAllowed},
		{name: "DELETE", method: "DELETE", uri: "/metrics", want: MethodNotAllowed},
		{name: "PATCH", method: "PATCH", uri: "/metrics", want: MethodNotAllowed},
		{name: "OPTIONS", method: "OPTIONS", uri: "/metrics", want: MethodNotAllowed},
		{name: "TRACE", method: "TRACE", uri: "/metrics", want: MethodNotAllowed},
		{name: "lower-case get", method: "get", uri: "/metrics", want: MethodNotAllowed},
		{name: "empty method", method: "", uri: "/metrics", want: MethodNotAllowed},
		{name: "POST with query", method: "POST", uri: "/metrics?a=b", want: MethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, q, hasQ := metricsRule.Decide(tc.method, tc.uri)
			if v != tc.want {
				t.Fatalf("Decide(%q, %q) verdict = %v, want %v", tc.method, tc.uri, v, tc.want)
			}
			if q != tc.wantQuery || hasQ != tc.wantHasQ {
				t.Errorf("Decide(%q, %q) query = %q, %v; want %q, %v",
					tc.method, tc.uri, q, hasQ, tc.wantQuery, tc.wantHasQ)
			}
		})
	}
}

func TestDecideOtherPath(t *testing.T) {
	rule := PathRule{Path: "/custom/metrics"}
	tests := []struct {
		name string
		uri  string
		want Verdict
	}{
		{name: "configured path", uri: "/custom/metrics?a=1", want: Forward},
		{name: "default path is not special", uri: "/metrics", want: NotFound},
		{name: "parent", uri: "/custom", want: NotFound},
		{name: "encoded inner slash", uri: "/custom%2Fmetrics", want: NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v, _, _ := rule.Decide(http.MethodGet, tc.uri); v != tc.want {
				t.Errorf("Decide(GET, %q) = %v, want %v", tc.uri, v, tc.want)
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	tests := []struct {
		v    Verdict
		want string
	}{
		{Forward, "forward"},
		{NotFound, "path"},
		{MethodNotAllowed, "method"},
		{Verdict(42), "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.v.String(); got != tc.want {
				t.Errorf("Verdict(%d).String() = %q, want %q", int(tc.v), got, tc.want)
			}
		})
	}
}

func FuzzPathRuleDecide(f *testing.F) {
	for _, s := range []string{
		"/metrics", "/metrics?", "/metrics?x=/../debug/pprof/heap", "/metrics?%zz",
		"/metrics/../healthz", "//metrics", "/metrics/", "/%6detrics", "*", "h:443",
		"https://h/metrics", "/metrics;x", "",
	} {
		for _, m := range []string{"GET", "HEAD", "POST", "CONNECT"} {
			f.Add(m, s)
		}
	}
	f.Fuzz(func(t *testing.T, method, uri string) {
		v, q, hasQ := metricsRule.Decide(method, uri)
		target, _, _ := strings.Cut(uri, "?")

		switch v {
		case Forward:
			if target != "/metrics" {
				t.Fatalf("Decide(%q, %q) forwards target %q", method, uri, target)
			}
			if method != http.MethodGet && method != http.MethodHead {
				t.Fatalf("Decide(%q, %q) forwards method %q", method, uri, method)
			}
			// The query goes on byte-identical: path plus query is the input.
			rebuilt := target
			if hasQ {
				rebuilt += "?" + q
			}
			if rebuilt != uri {
				t.Fatalf("Decide(%q, %q) query %q, %v does not rebuild the target",
					method, uri, q, hasQ)
			}
		case MethodNotAllowed:
			if target != "/metrics" {
				t.Fatalf("Decide(%q, %q) = 405 for target %q", method, uri, target)
			}
		case NotFound:
			if target == "/metrics" {
				t.Fatalf("Decide(%q, %q) = 404 for the metrics path", method, uri)
			}
		default:
			t.Fatalf("Decide(%q, %q) = unknown verdict %d", method, uri, int(v))
		}
		if v != Forward && (q != "" || hasQ) {
			t.Fatalf("Decide(%q, %q) = %v with query %q, %v", method, uri, v, q, hasQ)
		}
	})
}

// looksLikeCases are spellings a daemon might route to its metrics handler
// (true) and paths it would not (false).
var looksLikeCases = []struct {
	name string
	uri  string
	want bool
}{
	{name: "exact", uri: "/metrics", want: true},
	{name: "exact with query", uri: "/metrics?name[]=up", want: true},
	{name: "trailing slash", uri: "/metrics/", want: true},
	{name: "double slash", uri: "//metrics", want: true},
	{name: "dot segment", uri: "/./metrics", want: true},
	{name: "encoded letter", uri: "/%6detrics", want: true},
	{name: "encoded letter upper hex", uri: "/%6Detrics", want: true},
	{name: "double-encoded letter", uri: "/%256detrics", want: true},
	{name: "triple-encoded letter", uri: "/%25256detrics", want: true},
	{name: "encoded slash", uri: "%2Fmetrics", want: true},
	{name: "encoded dot-dot", uri: "/foo/%2e%2e/metrics", want: true},
	{name: "title case", uri: "/Metrics", want: true},
	{name: "upper case", uri: "/METRICS", want: true},
	{name: "path parameter", uri: "/metrics;jsessionid=1", want: true},
	{name: "tomcat dot-dot parameter", uri: "/foo/..;/metrics", want: true},
	{name: "NUL terminator", uri: "/metrics%00", want: true},
	{name: "NUL then junk", uri: "/metrics%00.html", want: true},
	{name: "backslash", uri: `\metrics`, want: true},
	{name: "backslash traversal", uri: `/foo\..\metrics`, want: true},
	{name: "absolute form", uri: "http://h/metrics", want: true},
	{name: "absolute form https with query", uri: "https://h:1/metrics?a", want: true},
	{name: "traversal", uri: "/foo/../metrics", want: true},
	{name: "traversal above root", uri: "/../../metrics", want: true},
	{name: "no leading slash", uri: "metrics", want: true},

	{name: "healthz", uri: "/healthz", want: false},
	{name: "readyz", uri: "/readyz", want: false},
	{name: "pprof", uri: "/debug/pprof/", want: false},
	{name: "pprof heap", uri: "/debug/pprof/heap?debug=1", want: false},
	{name: "root", uri: "/", want: false},
	{name: "longer", uri: "/metricsx", want: false},
	{name: "shorter", uri: "/metric", want: false},
	{name: "below", uri: "/metrics/x", want: false},
	{name: "traversal out", uri: "/metrics/../healthz", want: false},
	{name: "metrics in the query only", uri: "/healthz?/metrics", want: false},
	{name: "absolute form without path", uri: "http://metrics", want: false},
	{name: "empty", uri: "", want: false},
}

func TestLooksLike(t *testing.T) {
	for _, tc := range looksLikeCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := metricsRule.LooksLike(tc.uri); got != tc.want {
				t.Errorf("LooksLike(%q) = %v, want %v", tc.uri, got, tc.want)
			}
		})
	}
}

// TestLooksLikeCatchesAliasesOfPartialNormalising checks spellings that a
// daemon which percent-decodes once and removes dot-segments routes to
// /metrics. LooksLike once missed them: it applied each of its extra
// normalisations (absolute-form stripping, NUL truncation, backslashes,
// ';' parameters, repeated decoding) unconditionally, and that moved a
// "/.." to another segment than the daemon would see, so the diag listener
// forwarded these in clear text.
func TestLooksLikeCatchesAliasesOfPartialNormalising(t *testing.T) {
	tests := []struct {
		name string
		uri  string
	}{
		{name: "scheme separator inside the path", uri: "/metrics/a://b/../.."},
		{name: "NUL inside a segment", uri: "/a%00/../metrics"},
		{name: "backslash inside a segment", uri: `/metrics/a\b/..`},
		{name: "dot-dot made by stripping a parameter", uri: "/metrics/..;x/.."},
		{name: "slash made by a second decoding round", uri: "/metrics/a%252fb/.."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := url.PathUnescape(tc.uri)
			if err != nil || path.Clean(d) != "/metrics" {
				t.Fatalf("bad case: %q does not clean to /metrics (%q, %v)", tc.uri, d, err)
			}
			if !metricsRule.LooksLike(tc.uri) {
				t.Errorf("LooksLike(%q) = false, but decoding once and cleaning gives %q",
					tc.uri, path.Clean(d))
			}
		})
	}
}

func FuzzPathRuleLooksLike(f *testing.F) {
	for _, tc := range looksLikeCases {
		f.Add(tc.uri)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		got := metricsRule.LooksLike(uri)

		// Whatever Decide forwards, LooksLike must catch.
		if v, _, _ := metricsRule.Decide(http.MethodGet, uri); v == Forward && !got {
			t.Fatalf("LooksLike(%q) = false for a target Decide forwards", uri)
		}
		if got {
			return
		}
		p, _, _ := strings.Cut(uri, "?")
		d, err := url.PathUnescape(p)
		if err != nil {
			return
		}
		if c := path.Clean(d); c == "/metrics" {
			t.Fatalf("LooksLike(%q) = false, but decoding once and cleaning gives %q", uri, c)
		}
	})
}

func TestValidatePath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want error
	}{
		{name: "metrics", path: "/metrics"},
		{name: "root", path: "/"},
		{name: "nested", path: "/custom/metrics"},
		{name: "unreserved characters", path: "/a-b_c.d~e/F9"},
		{name: "dots inside a name", path: "/metrics.txt"},
		{name: "three dots", path: "/..."},

		{name: "empty", path: "", want: errPathNotAbsolute},
		{name: "relative", path: "metrics", want: errPathNotAbsolute},
		{name: "absolute URL", path: "http://h/metrics", want: errPathNotAbsolute},
		{name: "backslash root", path: `\metrics`, want: errPathNotAbsolute},

		{name: "trailing slash", path: "/metrics/", want: errPathNotClean},
		{name: "double slash", path: "//metrics", want: errPathNotClean},
		{name: "inner double slash", path: "/a//b", want: errPathNotClean},
		{name: "dot segment", path: "/./metrics", want: errPathNotClean},
		{name: "dot-dot segment", path: "/a/../metrics", want: errPathNotClean},
		{name: "trailing dot-dot", path: "/metrics/..", want: errPathNotClean},
		{name: "trailing dot", path: "/metrics/.", want: errPathNotClean},

		{name: "percent", path: "/%6detrics", want: errPathCharacter},
		{name: "query", path: "/metrics?a", want: errPathCharacter},
		{name: "fragment", path: "/metrics#a", want: errPathCharacter},
		{name: "space", path: "/me trics", want: errPathCharacter},
		{name: "semicolon", path: "/metrics;a", want: errPathCharacter},
		{name: "backslash inside", path: `/a\b`, want: errPathCharacter},
		{name: "colon", path: "/a:b", want: errPathCharacter},
		{name: "NUL", path: "/metrics\x00", want: errPathCharacter},
		{name: "non-ASCII", path: "/métrics", want: errPathCharacter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePath(tc.path)
			if !errors.Is(err, tc.want) {
				t.Errorf("ValidatePath(%q) = %v, want %v", tc.path, err, tc.want)
			}
		})
	}
}

// TestValidPathsDecideOnlyThemselves checks the contract between the two:
// a path ValidatePath accepts is matched by Decide in exactly one spelling,
// and LooksLike catches that spelling.
func TestValidPathsDecideOnlyThemselves(t *testing.T) {
	for _, p := range []string{"/metrics", "/", "/custom/metrics", "/a-b_c.d~e"} {
		t.Run(p, func(t *testing.T) {
			if err := ValidatePath(p); err != nil {
				t.Fatalf("ValidatePath(%q) = %v", p, err)
			}
			rule := PathRule{Path: p}
			if v, _, _ := rule.Decide(http.MethodGet, p); v != Forward {
				t.Errorf("Decide(GET, %q) = %v, want forward", p, v)
			}
			if v, _, _ := rule.Decide(http.MethodGet, p+"/"); p != "/" && v != NotFound {
				t.Errorf("Decide(GET, %q) = %v, want path", p+"/", v)
			}
			if !rule.LooksLike(p) {
				t.Errorf("LooksLike(%q) = false for the rule's own path", p)
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	targets := []string{
		"/metrics",
		"/metrics?collect[]=cpu&collect[]=mem",
		"/metrics/../debug/pprof/heap",
		"/debug/pprof/profile?seconds=30",
	}
	b.ReportAllocs()
	var n int
	for i := 0; b.Loop(); i++ {
		if v, _, _ := metricsRule.Decide(http.MethodGet, targets[i%len(targets)]); v == Forward {
			n++
		}
	}
	if n == 0 {
		b.Fatal("no target was forwarded")
	}
}

func BenchmarkLooksLike(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !metricsRule.LooksLike("/foo/..;/%256detrics/?a=b") {
			b.Fatal("alias not caught")
		}
	}
}
