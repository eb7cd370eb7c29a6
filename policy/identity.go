package policy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// IdentityRules are the allow-lists a client certificate's leaf is checked
// against once its chain has been verified. A client passes when any rule
// matches; with no rule at all, every verified client passes.
type IdentityRules struct {
	// SANs holds patterns for the leaf's subject alternative names:
	//   - an IP address or CIDR prefix, matched against IP SANs;
	//   - a URI with a scheme, such as spiffe://example.org/ns/monitoring/sa/prometheus,
	//     matched against URI SANs; a path segment that is exactly "*" matches
	//     any one non-empty segment;
	//   - a name with an "@", matched exactly against email SANs (the domain
	//     ignoring case);
	//   - anything else is a DNS name, matched ignoring case; a label that is
	//     exactly "*" matches any one label.
	SANs []string
	// CommonNames are matched exactly against the subject's common name.
	CommonNames []string
	// OrganizationalUnits are matched exactly against the subject's OUs.
	OrganizationalUnits []string
}

// Identity is a compiled set of [IdentityRules]. The zero value allows
// every client.
type Identity struct {
	dns    [][]string // labels, lower case; "*" is a wildcard label
	ips    []netip.Prefix
	uris   []uriPattern
	emails []string // lower case domain, local part as given
	cns    []string
	ous    []string
}

type uriPattern struct {
	scheme, host string // lower case
	segments     []string
}

// CompileIdentity checks every pattern in r and returns the matcher. An
// ambiguous pattern is an error naming it, so that a rule never allows
// more than its author could see.
func CompileIdentity(r IdentityRules) (*Identity, error) {
	id := &Identity{cns: r.CommonNames, ous: r.OrganizationalUnits}
	var errs []error
	for _, p := range r.SANs {
		if err := id.addSAN(p); err != nil {
			errs = append(errs, fmt.Errorf("client_allowed_sans: %q: %w", p, err))
		}
	}
	for _, cn := range r.CommonNames {
		if cn == "" || strings.TrimSpace(cn) != cn {
			errs = append(errs, fmt.Errorf("client_allowed_common_names: %q: empty, "+
				"or leading or trailing space", cn))
		}
	}
	for _, ou := range r.OrganizationalUnits {
		if ou == "" || strings.TrimSpace(ou) != ou {
			errs = append(errs, fmt.Errorf("client_allowed_organizational_units: %q: empty, "+
				"or leading or trailing space", ou))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return id, nil
}

func (id *Identity) addSAN(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	if strings.TrimSpace(p) != p {
		return errors.New("leading or trailing space")
	}

	if addr, err := netip.ParseAddr(p); err == nil {
		if addr.Zone() != "" {
			return errors.New("an IP SAN has no zone")
		}
		id.ips = append(id.ips, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
		return nil
	}
	if strings.Contains(p, "/") && !strings.Contains(p, "://") {
		prefix, err := compilePrefix(p)
		if err != nil {
			return err
		}
		id.ips = append(id.ips, prefix)
		return nil
	}
	if strings.Contains(p, "://") {
		u, err := compileURI(p)
		if err != nil {
			return err
		}
		id.uris = append(id.uris, u)
		return nil
	}
	if strings.Contains(p, "@") {
		e, err := normalizeEmail(p)
		if err != nil {
			return err
		}
		if strings.Contains(e, "*") {
			return errors.New("wildcards are not allowed in email addresses")
		}
		id.emails = append(id.emails, e)
		return nil
	}
	labels, err := compileDNS(p)
	if err != nil {
		return err
	}
	id.dns = append(id.dns, labels)
	return nil
}

// compilePrefix parses a CIDR prefix. Certificates' addresses are compared
// unmapped, so an IPv4-mapped IPv6 prefix becomes the IPv4 prefix it means.
func compilePrefix(p string) (netip.Prefix, error) {
	prefix, err := netip.ParsePrefix(p)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an IP prefix: %w", err)
	}
	if prefix.Masked() != prefix {
		return netip.Prefix{}, fmt.Errorf("prefix has host bits set; did you mean %s?",
			prefix.Masked())
	}
	if a := prefix.Addr(); a.Is4In6() {
		if prefix.Bits() < 96 {
			return netip.Prefix{}, errors.New("an IPv4-mapped prefix needs at least 96 bits")
		}
		prefix = netip.PrefixFrom(a.Unmap(), prefix.Bits()-96)
	}
	return prefix, nil
}

// compileDNS splits a DNS pattern into labels. A literal name may be a
// single label ("prometheus", as in-cluster names often are). "*" may
// stand for whole labels only, and never for the last two, so that "*.com"
// and "*.*" are refused. (That does not know public suffixes: "*.co.uk" is allowed.)
// A last label of digits only is refused: such a pattern is a mistyped IP
// address (RFC 3696, section 2), which would never match the IP SAN meant.
func compileDNS(p string) ([]string, error) {
	for i := 0; i < len(p); i++ {
		if p[i] >= 0x80 {
			return nil, errors.New("non-ASCII name; write internationalised names " +
				"in their xn-- form")
		}
	}
	labels := strings.Split(strings.ToLower(p), ".")
	if len(labels) < 2 && strings.Contains(p, "*") {
		return nil, errors.New("a DNS pattern with a wildcard needs at least three labels")
	}
	if last := labels[len(labels)-1]; last != "" && strings.Trim(last, "0123456789") == "" {
		return nil, errors.New("the last label is all digits: not a valid DNS name; " +
			"an IP address is written in full, like 10.0.0.1")
	}
	for i, l := range labels {
		switch {
		case l == "":
			return nil, errors.New("empty label")
		case l == "*":
			if i >= len(labels)-2 {
				return nil, errors.New("the last two labels must be literal")
			}
		case strings.Contains(l, "*"):
			return nil, fmt.Errorf("label %q: \"*\" must be a whole label", l)
		case !validLabel(l):
			return nil, fmt.Errorf("label %q is not a valid DNS label", l)
		}
	}
	return labels, nil
}

func validLabel(l string) bool {
	if len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func compileURI(p string) (uriPattern, error) {
	u, err := url.Parse(p)
	if err != nil {
		return uriPattern{}, fmt.Errorf("not a URI: %w", errors.Unwrap(err))
	}
	if u.Scheme == "" || u.Host == "" || u.User != nil || u.RawQuery != "" ||
		u.Fragment != "" || u.ForceQuery {
		return uriPattern{}, errors.New("a URI pattern is scheme://host/path, " +
			"with no user, query or fragment")
	}
	if strings.Contains(u.Host, "*") || strings.Contains(u.Scheme, "*") {
		return uriPattern{}, errors.New("\"*\" may stand only for path segments")
	}
	if strings.Contains(u.RawPath, "%") {
		return uriPattern{}, errors.New("percent-encoded paths are not supported")
	}

	pat := uriPattern{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Host)}
	if u.Path != "" {
		pat.segments = strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	}
	for _, s := range pat.segments {
		switch {
		case s == "":
			return uriPattern{}, errors.New("empty path segment")
		case s == "." || s == "..":
			return uriPattern{}, errors.New("dot-segments are not allowed")
		case s != "*" && strings.Contains(s, "*"):
			return uriPattern{}, fmt.Errorf("segment %q: \"*\" must be a whole segment", s)
		}
	}
	return pat, nil
}

func normalizeEmail(e string) (string, error) {
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", errors.New("not an email address")
	}
	return local + "@" + strings.ToLower(domain), nil
}

// Empty reports whether no rule is configured, so that every verified
// client is allowed.
func (id *Identity) Empty() bool {
	return id == nil || len(id.dns)+len(id.ips)+len(id.uris)+len(id.emails)+
		len(id.cns)+len(id.ous) == 0
}

// Allow reports whether the leaf certificate matches any rule. It does not
// verify the certificate: call it only with a leaf whose chain the TLS
// handshake has verified.
func (id *Identity) Allow(leaf *x509.Certificate) bool {
	if id.Empty() {
		return true
	}
	if slices.Contains(id.cns, leaf.Subject.CommonName) && leaf.Subject.CommonName != "" {
		return true
	}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if slices.Contains(id.ous, ou) {
			return true
		}
	}
	for _, name := range leaf.DNSNames {
		if id.matchDNS(name) {
			return true
		}
	}
	for _, ip := range leaf.IPAddresses {
		if id.matchIP(ip) {
			return true
		}
	}
	for _, u := range leaf.URIs {
		if id.matchURI(u) {
			return true
		}
	}
	for _, e := range leaf.EmailAddresses {
		if n, err := normalizeEmail(e); err == nil && slices.Contains(id.emails, n) {
			return true
		}
	}
	return false
}

func (id *Identity) matchDNS(name string) bool {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(name, ".")), ".")
	for _, pat := range id.dns {
		if matchSegments(pat, labels) {
			return true
		}
	}
	return false
}

func (id *Identity) matchIP(ip net.IP) bool {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range id.ips {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (id *Identity) matchURI(u *url.URL) bool {
	// A URI SAN with user info, a query, a fragment or escapes in its path
	// is never what a workload identity looks like; refuse rather than
	// guess how it compares.
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.RawPath, "%") {
		return false
	}
	var segs []string
	if u.Path != "" {
		segs = strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	}
	// A "*" segment must not match "." or "..": such an ID names another
	// path than it spells, and SPIFFE forbids them.
	if slices.Contains(segs, ".") || slices.Contains(segs, "..") {
		return false
	}
	for _, pat := range id.uris {
		if strings.EqualFold(u.Scheme, pat.scheme) && strings.EqualFold(u.Host, pat.host) &&
			matchSegments(pat.segments, segs) {
			return true
		}
	}
	return false
}

// matchSegments matches name against pattern part by part; "*" matches
// any one non-empty part.
func matchSegments(pattern, name []string) bool {
	if len(pattern) != len(name) {
		return false
	}
	for i, p := range pattern {
		if name[i] == "" || p != "*" && p != name[i] {
			return false
		}
	}
	return true
}

// Describe summarises a client certificate's identity for a log line:
// subject and SANs, never the certificate itself.
func Describe(leaf *x509.Certificate) []any {
	var sans []string
	sans = append(sans, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range leaf.URIs {
		sans = append(sans, u.String())
	}
	sans = append(sans, leaf.EmailAddresses...)
	return []any{"peer_subject", leaf.Subject.String(), "peer_sans", strings.Join(sans, ",")}
}
