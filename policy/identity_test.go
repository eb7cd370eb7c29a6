package policy_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// spiffeProm is the SPIFFE pattern of issue 3's example: Prometheus's
// service account in any namespace.
const spiffeProm = "spiffe://example.org/ns/*/sa/prometheus"

// mustURL parses s or fails the test.
func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parsing URL %q: %v", s, err)
	}
	return u
}

// compileIdentity compiles r or fails the test.
func compileIdentity(t testing.TB, r policy.IdentityRules) *policy.Identity {
	t.Helper()
	id, err := policy.CompileIdentity(r)
	if err != nil {
		t.Fatalf("CompileIdentity(%+v): %v", r, err)
	}
	return id
}

// sans returns rules holding only the SAN patterns p.
func sans(p ...string) policy.IdentityRules { return policy.IdentityRules{SANs: p} }

// idCert is the identity a test certificate carries; each field becomes the
// matching part of a devpki template.
type idCert struct {
	cn     string
	ous    []string
	dns    []string
	ips    []string
	uris   []string
	emails []string
}

// template turns c into a client template with the clientAuth usage.
func (c idCert) template(t testing.TB) devpki.Template {
	t.Helper()
	tmpl := devpki.Template{
		CommonName:          c.cn,
		OrganizationalUnits: c.ous,
		DNSNames:            c.dns,
		EmailAddresses:      c.emails,
		ExtKeyUsage:         []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range c.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			t.Fatalf("bad IP %q in test table", s)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	for _, s := range c.uris {
		tmpl.URIs = append(tmpl.URIs, mustURL(t, s))
	}
	return tmpl
}

func TestIdentityAllow(t *testing.T) {
	ca := newCA(t, "CA-A")

	tests := []struct {
		name  string
		rules policy.IdentityRules
		cert  idCert
		want  bool
	}{
		// DNS, exact.
		{name: "DNS exact", rules: sans("prometheus.monitoring.svc"),
			cert: idCert{dns: []string{"prometheus.monitoring.svc"}}, want: true},
		{name: "DNS exact, pattern in upper case", rules: sans("Prometheus.Example.COM"),
			cert: idCert{dns: []string{"prometheus.example.com"}}, want: true},
		{name: "DNS exact, certificate in upper case", rules: sans("prometheus.example.com"),
			cert: idCert{dns: []string{"PROMETHEUS.Example.Com"}}, want: true},
		{name: "DNS exact, certificate name with a trailing dot",
			rules: sans("prometheus.example.com"),
			cert:  idCert{dns: []string{"prometheus.example.com."}}, want: true},
		{name: "DNS exact, one of several SANs", rules: sans("prometheus.example.com"),
			cert: idCert{dns: []string{"a.example.com", "prometheus.example.com"}},
			want: true},
		{name: "DNS exact, other name", rules: sans("prometheus.example.com"),
			cert: idCert{dns: []string{"grafana.example.com"}}},
		{name: "DNS exact does not match a subdomain", rules: sans("example.com"),
			cert: idCert{dns: []string{"a.example.com"}}},
		{name: "DNS exact does not match the parent", rules: sans("a.example.com"),
			cert: idCert{dns: []string{"example.com"}}},
		{name: "DNS exact is not a suffix match", rules: sans("example.com"),
			cert: idCert{dns: []string{"evilexample.com"}}},
		{name: "DNS exact is not a prefix match", rules: sans("example.com"),
			cert: idCert{dns: []string{"example.com.evil.net"}}},
		{name: "DNS pattern ignores the common name", rules: sans("prometheus.example.com"),
			cert: idCert{cn: "prometheus.example.com"}},
		{name: "DNS pattern ignores email domains", rules: sans("example.com"),
			cert: idCert{emails: []string{"prometheus@example.com"}}},
		{name: "DNS pattern ignores URI hosts", rules: sans("prometheus.example.com"),
			cert: idCert{uris: []string{"https://prometheus.example.com"}}},

		// DNS, wildcard.
		{name: "DNS wildcard, one label", rules: sans("*.example.com"),
			cert: idCert{dns: []string{"prom.example.com"}}, want: true},
		{name: "DNS wildcard, one label in upper case", rules: sans("*.example.com"),
			cert: idCert{dns: []string{"PROM.EXAMPLE.COM"}}, want: true},
		{name: "DNS wildcard, zero labels", rules: sans("*.example.com"),
			cert: idCert{dns: []string{"example.com"}}},
		{name: "DNS wildcard, two labels", rules: sans("*.example.com"),
			cert: idCert{dns: []string{"a.b.example.com"}}},
		{name: "DNS wildcard, other domain", rules: sans("*.example.com"),
			cert: idCert{dns: []string{"prom.example.org"}}},
		{name: "DNS wildcard, suffix without a dot", rules: sans("*.example.com"),
			cert: idCert{dns: []string{"prom-example.com"}}},
		{name: "DNS middle wildcard", rules: sans("prom.*.example.com"),
			cert: idCert{dns: []string{"prom.eu.example.com"}}, want: true},
		{name: "DNS middle wildcard, zero labels", rules: sans("prom.*.example.com"),
			cert: idCert{dns: []string{"prom.example.com"}}},
		{name: "DNS middle wildcard, two labels", rules: sans("prom.*.example.com"),
			cert: idCert{dns: []string{"prom.eu.west.example.com"}}},
		{name: "DNS middle wildcard, other first label", rules: sans("prom.*.example.com"),
			cert: idCert{dns: []string{"node.eu.example.com"}}},
		{name: "DNS two wildcards, two labels", rules: sans("*.*.example.com"),
			cert: idCert{dns: []string{"a.b.example.com"}}, want: true},
		{name: "DNS two wildcards, one label", rules: sans("*.*.example.com"),
			cert: idCert{dns: []string{"a.example.com"}}},

		// IP.
		{name: "IPv4 exact", rules: sans("10.0.0.1"),
			cert: idCert{ips: []string{"10.0.0.1"}}, want: true},
		{name: "IPv4 exact, other address", rules: sans("10.0.0.1"),
			cert: idCert{ips: []string{"10.0.0.2"}}},
		{name: "IPv4 /32", rules: sans("10.0.0.1/32"),
			cert: idCert{ips: []string{"10.0.0.1"}}, want: true},
		{name: "IPv4 CIDR, inside", rules: sans("10.0.0.0/8"),
			cert: idCert{ips: []string{"10.255.3.4"}}, want: true},
		{name: "IPv4 CIDR, outside", rules: sans("10.0.0.0/8"),
			cert: idCert{ips: []string{"11.0.0.1"}}},
		{name: "IPv4-mapped IPv6 pattern, IPv4 SAN", rules: sans("::ffff:10.0.0.1"),
			cert: idCert{ips: []string{"10.0.0.1"}}, want: true},
		{name: "IPv4 pattern, IPv6 loopback SAN", rules: sans("127.0.0.1"),
			cert: idCert{ips: []string{"::1"}}},
		{name: "IPv6 exact", rules: sans("2001:db8::1"),
			cert: idCert{ips: []string{"2001:db8::1"}}, want: true},
		{name: "IPv6 exact, pattern in upper case", rules: sans("2001:DB8::1"),
			cert: idCert{ips: []string{"2001:db8::1"}}, want: true},
		{name: "IPv6 exact, other address", rules: sans("2001:db8::1"),
			cert: idCert{ips: []string{"2001:db8::2"}}},
		{name: "IPv6 CIDR, inside", rules: sans("2001:db8::/32"),
			cert: idCert{ips: []string{"2001:db8:5::7"}}, want: true},
		{name: "IPv6 CIDR, outside", rules: sans("2001:db8::/32"),
			cert: idCert{ips: []string{"2001:db9::7"}}},
		{name: "IP pattern ignores a DNS SAN spelling the address", rules: sans("10.0.0.1"),
			cert: idCert{dns: []string{"10.0.0.1"}}},

		// URI.
		{name: "SPIFFE wildcard segment", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/monitoring/sa/prometheus"}},
			want: true},
		{name: "SPIFFE host in upper case", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://EXAMPLE.org/ns/monitoring/sa/prometheus"}},
			want: true},
		{name: "SPIFFE pattern host in upper case",
			rules: sans("spiffe://Example.ORG/ns/*/sa/prometheus"),
			cert:  idCert{uris: []string{"spiffe://example.org/ns/monitoring/sa/prometheus"}},
			want:  true},
		{name: "SPIFFE extra segment", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/a/b/sa/prometheus"}}},
		{name: "SPIFFE missing segment", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/sa/prometheus"}}},
		{name: "SPIFFE empty segment", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns//sa/prometheus"}}},
		{name: "SPIFFE trailing slash", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/monitoring/sa/prometheus/"}}},
		{name: "SPIFFE other trust domain", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.com/ns/monitoring/sa/prometheus"}}},
		{name: "SPIFFE trust domain with a port", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org:1/ns/x/sa/prometheus"}}},
		{name: "SPIFFE path is case-sensitive", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/NS/monitoring/sa/prometheus"}}},
		{name: "SPIFFE other service account", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/monitoring/sa/grafana"}}},
		{name: "URI other scheme", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"https://example.org/ns/monitoring/sa/prometheus"}}},
		{name: "URI SAN with a query", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/m/sa/prometheus?x=1"}}},
		{name: "URI SAN with a fragment", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/m/sa/prometheus#x"}}},
		{name: "URI SAN with user info", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://u@example.org/ns/m/sa/prometheus"}}},
		{name: "URI SAN with an encoded slash", rules: sans(spiffeProm),
			cert: idCert{uris: []string{"spiffe://example.org/ns/a%2Fb/sa/prometheus"}}},
		{name: "URI exact", rules: sans("spiffe://example.org/ns/mon/sa/prometheus"),
			cert: idCert{uris: []string{"spiffe://example.org/ns/mon/sa/prometheus"}},
			want: true},
		{name: "URI exact, other namespace", rules: sans("spiffe://example.org/ns/mon/sa/p"),
			cert: idCert{uris: []string{"spiffe://example.org/ns/dev/sa/p"}}},
		{name: "URI host only", rules: sans("spiffe://example.org"),
			cert: idCert{uris: []string{"spiffe://example.org"}}, want: true},
		{name: "URI host only, certificate with a path", rules: sans("spiffe://example.org"),
			cert: idCert{uris: []string{"spiffe://example.org/x"}}},

		// Email.
		{name: "email exact", rules: sans("prometheus@example.com"),
			cert: idCert{emails: []string{"prometheus@example.com"}}, want: true},
		{name: "email domain ignores case", rules: sans("prometheus@EXAMPLE.com"),
			cert: idCert{emails: []string{"prometheus@example.COM"}}, want: true},
		{name: "email local part is case-sensitive", rules: sans("Prometheus@example.com"),
			cert: idCert{emails: []string{"prometheus@example.com"}}},
		{name: "email other domain", rules: sans("prometheus@example.com"),
			cert: idCert{emails: []string{"prometheus@sub.example.com"}}},
		{name: "email pattern ignores DNS SANs", rules: sans("prometheus@example.com"),
			cert: idCert{dns: []string{"example.com"}}},

		// Subject.
		{name: "DNS single label, literal", rules: sans("prometheus"),
			cert: idCert{dns: []string{"prometheus"}}, want: true},
		{name: "DNS single label does not match a longer name", rules: sans("prometheus"),
			cert: idCert{dns: []string{"prometheus.monitoring"}}},
		{name: "CN exact", rules: policy.IdentityRules{CommonNames: []string{"prometheus"}},
			cert: idCert{cn: "prometheus"}, want: true},
		{name: "CN is case-sensitive",
			rules: policy.IdentityRules{CommonNames: []string{"prometheus"}},
			cert:  idCert{cn: "Prometheus"}},
		{name: "CN is not a prefix match",
			rules: policy.IdentityRules{CommonNames: []string{"prometheus"}},
			cert:  idCert{cn: "prometheus-2"}},
		{name: "CN rule, certificate without CN",
			rules: policy.IdentityRules{CommonNames: []string{"prometheus"}},
			cert:  idCert{dns: []string{"prometheus"}}},
		{name: "OU, one of several",
			rules: policy.IdentityRules{OrganizationalUnits: []string{"monitoring"}},
			cert:  idCert{ous: []string{"ops", "monitoring"}}, want: true},
		{name: "OU is case-sensitive",
			rules: policy.IdentityRules{OrganizationalUnits: []string{"monitoring"}},
			cert:  idCert{ous: []string{"Monitoring"}}},
		{name: "OU rule, certificate without OU",
			rules: policy.IdentityRules{OrganizationalUnits: []string{"monitoring"}},
			cert:  idCert{cn: "monitoring"}},

		// Several rules: any one is enough.
		{name: "OR: only the DNS rule matches", rules: mixedRules,
			cert: idCert{cn: "x", dns: []string{"prom.example.com"}}, want: true},
		{name: "OR: only the CN rule matches", rules: mixedRules,
			cert: idCert{cn: "prometheus", dns: []string{"x.example.org"}}, want: true},
		{name: "OR: only the OU rule matches", rules: mixedRules,
			cert: idCert{cn: "x", ous: []string{"monitoring"}}, want: true},
		{name: "OR: only the IP rule matches", rules: mixedRules,
			cert: idCert{cn: "x", ips: []string{"192.168.7.7"}}, want: true},
		{name: "OR: only the URI rule matches", rules: mixedRules,
			cert: idCert{uris: []string{"spiffe://example.org/ns/a/sa/prometheus"}},
			want: true},
		{name: "OR: no rule matches", rules: mixedRules,
			cert: idCert{cn: "grafana", ous: []string{"dashboards"},
				dns: []string{"grafana.example.org"}, ips: []string{"10.1.1.1"}}},

		// No rule at all.
		{name: "no rules allow any certificate", cert: idCert{cn: "anyone"}, want: true},
		{name: "no rules allow a certificate without names", want: true},
		{name: "empty lists allow any certificate", want: true,
			rules: policy.IdentityRules{SANs: []string{}, CommonNames: []string{}},
			cert:  idCert{dns: []string{"x.example.com"}}},
		{name: "SAN rules refuse a certificate without SANs", rules: mixedRules},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := compileIdentity(t, tc.rules)
			leaf := issue(t, ca, tc.cert.template(t)).Cert

			if got := id.Allow(leaf); got != tc.want {
				t.Errorf("Allow(%v) under %+v = %v, want %v",
					policy.Describe(leaf), tc.rules, got, tc.want)
			}
		})
	}
}

// mixedRules has one rule of each kind.
var mixedRules = policy.IdentityRules{
	SANs:                []string{"*.example.com", "192.168.0.0/16", spiffeProm},
	CommonNames:         []string{"prometheus"},
	OrganizationalUnits: []string{"monitoring"},
}

// TestIdentityAllowIPv4MappedSAN covers certificates from issuers that
// encode an IPv4 SAN in its 16-byte IPv4-mapped IPv6 form. crypto/x509
// always writes four bytes, so the certificate is built by hand.
func TestIdentityAllowIPv4MappedSAN(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()
	if len(mapped) != 16 {
		t.Fatalf("mapped address has %d bytes, want 16", len(mapped))
	}

	tests := []struct {
		name    string
		pattern string
		want    bool
	}{
		{name: "IPv4 pattern", pattern: "10.0.0.1", want: true},
		{name: "IPv4 CIDR", pattern: "10.0.0.0/8", want: true},
		{name: "mapped pattern", pattern: "::ffff:10.0.0.1", want: true},
		{name: "other IPv4", pattern: "10.0.0.2"},
		{name: "IPv6 prefix without the mapping", pattern: "2001:db8::/32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := compileIdentity(t, sans(tc.pattern))
			leaf := &x509.Certificate{IPAddresses: []net.IP{mapped}}

			if got := id.Allow(leaf); got != tc.want {
				t.Errorf("pattern %q, SAN %v: Allow = %v, want %v",
					tc.pattern, net.IP(mapped), got, tc.want)
			}
		})
	}
}

// TestIdentityIPv4MappedPrefixMatchesIPv4 checks that an IPv4-mapped IPv6
// prefix matches the IPv4 addresses it maps. Certificates' addresses are
// unmapped before matching; such a prefix once compiled but could match no
// certificate at all.
func TestIdentityIPv4MappedPrefixMatchesIPv4(t *testing.T) {
	for _, pattern := range []string{"::ffff:10.0.0.0/104", "::ffff:0.0.0.0/96"} {
		t.Run(pattern, func(t *testing.T) {
			id, err := policy.CompileIdentity(sans(pattern))
			if err != nil {
				return // refusing the pattern is a fix too
			}
			for _, ip := range []string{"10.1.2.3", "::ffff:10.1.2.3"} {
				addr := netip.MustParseAddr(ip).AsSlice() // 4 or 16 bytes
				leaf := &x509.Certificate{IPAddresses: []net.IP{addr}}
				if !id.Allow(leaf) {
					t.Errorf("pattern %q compiles but does not allow IP SAN %s", pattern, ip)
				}
			}
		})
	}
}

// TestIdentityURIWildcardRefusesDotSegments checks that "*" does not match
// a "." or ".." segment of a certificate's URI SAN: otherwise
// spiffe://example.org/ns/*/sa/prometheus would allow
// spiffe://example.org/ns/../sa/prometheus, a name that resolves to
// spiffe://example.org/sa/prometheus. Patterns with dot-segments are
// refused at compile time, and SPIFFE IDs may not hold them.
func TestIdentityURIWildcardRefusesDotSegments(t *testing.T) {
	id := compileIdentity(t, sans(spiffeProm))

	for _, name := range []string{
		"spiffe://example.org/ns/../sa/prometheus",
		"spiffe://example.org/ns/./sa/prometheus",
	} {
		t.Run(name, func(t *testing.T) {
			leaf := &x509.Certificate{URIs: []*url.URL{mustURL(t, name)}}
			if id.Allow(leaf) {
				t.Errorf("pattern %q allows URI SAN %q", spiffeProm, name)
			}
		})
	}
}

func TestIdentityEmpty(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "anyone"}}

	tests := []struct {
		name string
		id   *policy.Identity
		want bool
	}{
		{name: "nil", id: nil, want: true},
		{name: "zero value", id: &policy.Identity{}, want: true},
		{name: "compiled from nothing", id: compileIdentity(t, policy.IdentityRules{}),
			want: true},
		{name: "compiled from empty lists", want: true, id: compileIdentity(t,
			policy.IdentityRules{SANs: []string{}, OrganizationalUnits: []string{}})},
		{name: "a SAN", id: compileIdentity(t, sans("x.example.com"))},
		{name: "an IP", id: compileIdentity(t, sans("10.0.0.0/8"))},
		{name: "a URI", id: compileIdentity(t, sans(spiffeProm))},
		{name: "an email", id: compileIdentity(t, sans("a@example.com"))},
		{name: "a CN",
			id: compileIdentity(t, policy.IdentityRules{CommonNames: []string{"p"}})},
		{name: "an OU",
			id: compileIdentity(t, policy.IdentityRules{OrganizationalUnits: []string{"p"}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.id.Empty(); got != tc.want {
				t.Errorf("Empty() = %v, want %v", got, tc.want)
			}
			// An empty identity allows everyone; a non-empty one none of
			// its rules match.
			if got := tc.id.Allow(leaf); got != tc.want {
				t.Errorf("Allow(CN=anyone) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileIdentityAccepts(t *testing.T) {
	for _, p := range []string{
		"prometheus.example.com", "*.example.com", "prom.*.example.com", "*.*.example.com",
		"_metrics._tcp.example.com", "xn--bcher-kva.example", "a-b.example.com",
		"10.0.0.1", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::1", "2001:db8::/32",
		"::ffff:10.0.0.1", spiffeProm, "spiffe://example.org", "spiffe://example.org/*",
		"https://example.org:8443/a/b", "prometheus@example.com",
	} {
		t.Run(p, func(t *testing.T) {
			id, err := policy.CompileIdentity(sans(p))
			if err != nil {
				t.Fatalf("CompileIdentity(%q): %v", p, err)
			}
			if id.Empty() {
				t.Errorf("CompileIdentity(%q) compiled to no rule", p)
			}
		})
	}
}

func TestCompileIdentityRefuses(t *testing.T) {
	tests := []struct {
		name  string
		rules policy.IdentityRules
	}{
		{"star alone", sans("*")},
		{"star under a TLD", sans("*.com")},
		{"star as TLD", sans("example.*")},
		{"star in the second-level label", sans("prom.*.com")},
		{"two stars only", sans("*.*")},
		{"partial label wildcard", sans("pro*.example.com")},
		{"double star", sans("**.example.com")},
		{"empty label", sans("a..b.com")},
		{"leading dot", sans(".example.com")},
		{"single label with a wildcard", sans("*")},
		{"label with a leading hyphen", sans("-prom.example.com")},
		{"label with a bad character", sans("prom!.example.com")},
		{"label longer than 63", sans(strings.Repeat("a", 64) + ".example.com")},
		{"IP with port", sans("10.0.0.1:9090")},
		{"bracketed IPv6", sans("[2001:db8::1]")},
		{"CIDR with host bits", sans("10.0.0.1/8")},
		{"IPv6 CIDR with host bits", sans("2001:db8::1/32")},
		{"CIDR too long", sans("10.0.0.0/33")},
		{"CIDR not an address", sans("example.com/8")},
		{"URI wildcard host", sans("spiffe://*/x")},
		{"URI wildcard in host label", sans("spiffe://*.example.org/x")},
		{"URI wildcard scheme", sans("*://example.org/x")},
		{"URI partial segment wildcard", sans("spiffe://td/a*b")},
		{"URI prefix segment wildcard", sans("spiffe://td/*a")},
		{"URI dot-dot segment", sans("spiffe://td/../x")},
		{"URI dot segment", sans("spiffe://td/./x")},
		{"URI empty segment", sans("spiffe://td/a//x")},
		{"URI trailing slash", sans("spiffe://td/x/")},
		{"URI root path", sans("spiffe://td/")},
		{"URI query", sans("spiffe://td/x?a=b")},
		{"URI empty query", sans("spiffe://td/x?")},
		{"URI fragment", sans("spiffe://td/x#f")},
		{"URI user info", sans("spiffe://user@td/x")},
		{"URI no host", sans("spiffe:///x")},
		{"URI encoded slash", sans("spiffe://td/a%2Fb")},
		{"URI bad escape", sans("spiffe://td/a%zz")},
		{"email wildcard local part", sans("*@example.com")},
		{"email wildcard domain", sans("prometheus@*.example.com")},
		{"email without local part", sans("@example.com")},
		{"email without domain", sans("prometheus@")},
		{"email with two @", sans("a@b@example.com")},
		{"empty SAN", sans("")},
		{"space SAN", sans(" ")},
		{"leading space", sans(" prometheus.example.com")},
		{"trailing space", sans("prometheus.example.com ")},
		{"trailing newline", sans("10.0.0.1\n")},
		{"leading tab", sans("\tspiffe://td/x")},
		{"empty CN", policy.IdentityRules{CommonNames: []string{""}}},
		{"empty OU", policy.IdentityRules{OrganizationalUnits: []string{""}}},
		{"one bad among good", sans("a.example.com", "*", "10.0.0.0/8")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := policy.CompileIdentity(tc.rules)
			if err == nil {
				t.Fatalf("CompileIdentity(%+v) succeeded, want an error", tc.rules)
			}
			if id != nil {
				t.Errorf("CompileIdentity returned an identity with its error")
			}
		})
	}
}

// TestCompileIdentityNamesEveryBadPattern checks that the load error names
// each refused pattern, so that an operator can fix them all in one go.
// The text is the only place the name appears: there is no error type.
func TestCompileIdentityNamesEveryBadPattern(t *testing.T) {
	bad := []string{"*.com", "spiffe://td/a*b", "10.0.0.1/8"}
	_, err := policy.CompileIdentity(sans(append([]string{"ok.example.com"}, bad...)...))
	if err == nil {
		t.Fatal("CompileIdentity succeeded, want an error")
	}
	for _, p := range bad {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name pattern %q", err, p)
		}
	}
}

// TestCompileIdentityRefusesIPLookalikeDNSPatterns checks that a pattern
// that looks like an IP address but does not parse as one (a leading zero,
// an octet over 255) is refused at load rather than taken as a DNS pattern
// that would never match the IP SAN its author meant. No real top-level
// domain is all digits (RFC 3696, section 2).
func TestCompileIdentityRefusesIPLookalikeDNSPatterns(t *testing.T) {
	for _, p := range []string{"010.0.0.1", "10.0.0.256", "10.0.1", "192.168.1.1.1"} {
		t.Run(p, func(t *testing.T) {
			if _, err := policy.CompileIdentity(sans(p)); err == nil {
				t.Errorf("CompileIdentity(%q) succeeded as a DNS pattern, want an error", p)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	ca := newCA(t, "CA-A")
	leaf := issue(t, ca, idCert{
		cn:     "prometheus",
		ous:    []string{"monitoring"},
		dns:    []string{"prom.example.com"},
		ips:    []string{"10.0.0.1"},
		uris:   []string{"spiffe://example.org/ns/m/sa/prometheus"},
		emails: []string{"prom@example.com"},
	}.template(t)).Cert

	got := policy.Describe(leaf)
	want := []any{
		"peer_subject", leaf.Subject.String(),
		"peer_sans", "prom.example.com,10.0.0.1,spiffe://example.org/ns/m/sa/prometheus," +
			"prom@example.com",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if !strings.Contains(leaf.Subject.String(), "CN=prometheus") {
		t.Errorf("subject %q does not name the CN", leaf.Subject)
	}
}

// fuzzCert returns a certificate carrying name in every field Allow reads,
// including an IP SAN of name's raw bytes whatever their length.
func fuzzCert(name string) *x509.Certificate {
	c := &x509.Certificate{
		Subject:        pkix.Name{CommonName: name, OrganizationalUnit: []string{name}},
		DNSNames:       []string{name, name + "."},
		EmailAddresses: []string{name},
		IPAddresses:    []net.IP{net.IP(name)},
	}
	if u, err := url.Parse(name); err == nil {
		c.URIs = []*url.URL{u}
	}
	return c
}

// dnsOnly returns a certificate whose only name is the DNS SAN name.
func dnsOnly(name string) *x509.Certificate {
	return &x509.Certificate{DNSNames: []string{name}}
}

// isDNSPattern reports whether p is read as a DNS pattern: the spec's "anything
// else" after IP addresses, prefixes, URIs and emails.
func isDNSPattern(p string) bool {
	_, err := netip.ParseAddr(p)
	return err != nil && !strings.ContainsAny(p, "/@")
}

// dnsWant is the reference DNS matcher: same number of labels, "*" matching
// any one non-empty label, other labels equal ignoring case. One trailing
// dot on the certificate's name is ignored.
func dnsWant(pattern, name string) bool {
	pl := strings.Split(strings.ToLower(pattern), ".")
	nl := strings.Split(strings.ToLower(strings.TrimSuffix(name, ".")), ".")
	if len(pl) != len(nl) {
		return false
	}
	for i := range pl {
		if nl[i] == "" || pl[i] != "*" && pl[i] != nl[i] {
			return false
		}
	}
	return true
}

// caseVariants returns s in upper case and with alternate ASCII letters
// flipped.
func caseVariants(s string) []string {
	b := []byte(s)
	for i, c := range b {
		if i%2 == 0 && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return []string{s, strings.ToUpper(s), string(b)}
}

// selfCert returns a certificate carrying a wildcard-free SAN pattern p as
// a SAN of p's own kind, and whether p is such a pattern.
func selfCert(p string) (*x509.Certificate, bool) {
	if strings.Contains(p, "*") {
		return nil, false
	}
	if a, err := netip.ParseAddr(p); err == nil {
		return &x509.Certificate{IPAddresses: []net.IP{a.AsSlice()}}, true
	}
	if pre, err := netip.ParsePrefix(p); err == nil {
		if pre.Addr().Is4In6() {
			// Known bug, see TestIdentityIPv4MappedPrefixMatchesIPv4.
			return nil, false
		}
		return &x509.Certificate{IPAddresses: []net.IP{pre.Addr().AsSlice()}}, true
	}
	if strings.Contains(p, "://") {
		u, err := url.Parse(p)
		if err != nil {
			return nil, false
		}
		return &x509.Certificate{URIs: []*url.URL{u}}, true
	}
	if strings.Contains(p, "@") {
		return &x509.Certificate{EmailAddresses: []string{p}}, true
	}
	return dnsOnly(p), true
}

func FuzzIdentity(f *testing.F) {
	for _, s := range [][2]string{
		{"*.example.com", "prom.example.com"}, {"*.example.com", "example.com"},
		{"*.example.com", "a.b.example.com"}, {"prom.*.example.com", "prom.x.example.com"},
		{"Prom.Example.com", "PROM.example.COM."}, {"*.com", "a.com"}, {"example.*", "x"},
		{"a..b.com", "a..b.com"}, {"10.0.0.0/8", "10.1.2.3"}, {"10.0.0.1/8", ""},
		{"::ffff:10.0.0.1", "\x0a\x00\x00\x01"}, {"2001:db8::/32", "2001:db8::1"},
		{spiffeProm, "spiffe://example.org/ns/m/sa/prometheus"},
		{spiffeProm, "spiffe://example.org/ns//sa/prometheus"},
		{"spiffe://td/../x", "spiffe://td/../x"}, {"spiffe://td/a%2Fb", "spiffe://td/a/b"},
		{"prom@Example.com", "prom@example.COM"}, {"*@example.com", "a@example.com"},
		{" x.example.com", "x.example.com"}, {"", ""}, {"fe80::1%eth0", "fe80::1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		// Compiling never panics, whatever the rule kind.
		_, _ = policy.CompileIdentity(policy.IdentityRules{
			SANs: []string{pattern, name}, CommonNames: []string{pattern},
			OrganizationalUnits: []string{name},
		})
		id, err := policy.CompileIdentity(sans(pattern))
		if err != nil {
			if id != nil {
				t.Fatalf("CompileIdentity(%q) returned an identity with error %v", pattern, err)
			}
			return
		}
		if id.Empty() {
			t.Fatalf("CompileIdentity(%q) compiled to no rule", pattern)
		}

		// Allow never panics on arbitrary certificates.
		_ = id.Allow(fuzzCert(name))
		_ = id.Allow(fuzzCert(pattern))
		_ = id.Allow(&x509.Certificate{})

		// A wildcard-free pattern allows a certificate carrying exactly it,
		// and a DNS one in any case and with a trailing dot.
		if self, ok := selfCert(pattern); ok {
			if !id.Allow(self) {
				t.Fatalf("pattern %q does not allow its own name", pattern)
			}
			if isDNSPattern(pattern) {
				for _, v := range caseVariants(pattern) {
					if !id.Allow(dnsOnly(v)) || !id.Allow(dnsOnly(v+".")) {
						t.Fatalf("DNS pattern %q does not allow DNS SAN %q", pattern, v)
					}
				}
			}
		}

		// A certificate with one DNS SAN passes only a DNS pattern with as
		// many labels, and exactly when the reference matcher says so.
		got := id.Allow(dnsOnly(name))
		if !isDNSPattern(pattern) {
			if got {
				t.Fatalf("non-DNS pattern %q allows DNS SAN %q", pattern, name)
			}
			return
		}
		pl := strings.Count(pattern, ".") + 1
		nl := strings.Count(strings.TrimSuffix(name, "."), ".") + 1
		if got && pl != nl {
			t.Fatalf("pattern %q (%d labels) allows DNS SAN %q (%d labels)",
				pattern, pl, name, nl)
		}
		if want := dnsWant(pattern, name); got != want {
			t.Fatalf("pattern %q, DNS SAN %q: Allow = %v, want %v", pattern, name, got, want)
		}
	})
}
