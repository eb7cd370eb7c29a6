package policy

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// Verdict is the decision on one request to the metrics listener.
type Verdict int

const (
	// Forward means the request may go to the daemon.
	Forward Verdict = iota
	// NotFound means the request asked for a path other than the metrics
	// path, or spelled the metrics path in a way the proxy does not accept.
	NotFound
	// MethodNotAllowed means the path was right but the method was not GET
	// or HEAD.
	MethodNotAllowed
)

// String returns the verdict as used in logs and metric labels.
func (v Verdict) String() string {
	switch v {
	case Forward:
		return "forward"
	case NotFound:
		return "path"
	case MethodNotAllowed:
		return "method"
	default:
		return "unknown"
	}
}

// PathRule lets exactly one path through: GET and HEAD of Path, with any
// query. The zero value is not usable; set Path.
type PathRule struct {
	// Path is the one path that passes, such as "/metrics". It must be
	// clean: absolute, no dot-segments, no repeated or trailing slash, and
	// nothing that needs percent-encoding.
	Path string
}

// Decide judges a request by its method and its request target exactly as
// the client sent it (http.Request.RequestURI). On Forward it also returns
// the raw query, byte for byte, and whether a '?' was present, so that the
// caller can pass "/metrics?" on unchanged.
//
// The target is compared as bytes, never decoded or cleaned first: a proxy
// that decodes or normalises before it matches can be led to approve one
// path and forward another (CVE-2019-9901 in Envoy). Any spelling other than
// the exact path, such as "/metrics/", "//metrics", "/metrics/../x",
// "/%6detrics" or an absolute-form target, is not this path and gets
// NotFound.
func (r PathRule) Decide(method, requestURI string) (v Verdict, rawQuery string, hasQuery bool) {
	target, rawQuery, hasQuery := strings.Cut(requestURI, "?")
	if target != r.Path {
		return NotFound, "", false
	}

	// The daemon sees only GET or HEAD: both are safe and carry no body, so
	// nothing the client sends can change the daemon's state.
	if method != http.MethodGet && method != http.MethodHead {
		return MethodNotAllowed, "", false
	}
	return Forward, rawQuery, hasQuery
}

// maxDecodeRounds bounds how many layers of percent-encoding LooksLike
// peels off. Three covers every double- and triple-encoding seen in the
// wild while keeping the work per request constant.
const maxDecodeRounds = 3

// LooksLike reports whether a daemon could take requestURI to mean the
// rule's path, under the normalisations common web servers apply:
// percent-decoding (once or repeatedly), dot-segment removal, merged and
// trailing slashes, backslashes as slashes, ';' path parameters, a NUL
// terminator, letter case, and absolute-form targets.
//
// Servers apply different subsets of these, so every subset is tried and
// any one that yields the path counts: applying them all in one chain can
// itself hide the path (a backslash turned into a slash adds a segment
// that a following ".." then eats).
//
// The diag listener uses it to keep the metrics path off the clear-text
// address. It errs towards true: hiding an odd spelling of some other path
// from the diag address costs little, letting a spelling of the metrics path
// through would defeat the metrics listener's mTLS.
func (r PathRule) LooksLike(requestURI string) bool {
	p, _, _ := strings.Cut(requestURI, "?")
	p = stripScheme(p)

	for range maxDecodeRounds + 1 {
		if r.matchesNormalised(p) {
			return true
		}
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			return false
		}
		p = d
	}
	return false
}

// The normalisations tried in every combination by matchesNormalised.
const (
	normBackslash = 1 << iota
	normParams
	normNUL
	normAll = normBackslash | normParams | normNUL
)

func (r PathRule) matchesNormalised(p string) bool {
	for set := 0; set <= normAll; set++ {
		q := p
		if set&normBackslash != 0 {
			q = strings.ReplaceAll(q, `\`, "/")
		}
		if set&normNUL != 0 {
			if i := strings.IndexByte(q, 0); i >= 0 {
				q = q[:i]
			}
		}
		if set&normParams != 0 {
			q = stripPathParams(q)
		}
		if strings.EqualFold(path.Clean("/"+q), r.Path) {
			return true
		}
	}
	return false
}

// stripScheme drops the scheme and authority of an absolute-form target
// ("http://host/metrics"); a "://" anywhere but right after a leading
// scheme is part of the path.
func stripScheme(p string) string {
	i := strings.Index(p, "://")
	if i <= 0 || !isScheme(p[:i]) {
		return p
	}
	rest := p[i+3:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return "/"
	}
	return rest[j:]
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// stripPathParams removes ";params" from every segment, as servlet
// containers do before they route.
func stripPathParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}

// ValidatePath reports whether p can serve as a PathRule path, and why not.
// A path is absolute and clean, and made only of letters, digits and
// "-._~/", so that its spelling on the wire is the one spelling there is.
func ValidatePath(p string) error {
	switch {
	case p == "" || p[0] != '/':
		return errPathNotAbsolute
	case p != "/" && (p != path.Clean(p) || strings.HasSuffix(p, "/")):
		return errPathNotClean
	}
	for i := 0; i < len(p); i++ {
		if !isPathByte(p[i]) {
			return errPathCharacter
		}
	}
	return nil
}

func isPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~/", c) >= 0
}
