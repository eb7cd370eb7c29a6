package upstream

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders apply to one connection only and never cross a proxy
// (RFC 9110, section 7.6.1). Transfer-Encoding and Content-Length are
// dropped too: the request carries no body, and the response's framing is
// the server's to decide.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// forwardHeaders returns the request headers to send to the daemon: every
// end-to-end header, values shared with in (neither side changes them).
// Accept, Accept-Encoding, User-Agent and the scrape timeout pass through
// untouched, so content negotiation stays between Prometheus and the daemon.
func forwardHeaders(in http.Header) http.Header {
	named := connectionNamed(in)
	out := make(http.Header, len(in))
	for k, v := range in {
		if hopHeaders[k] || named[k] || k == "Content-Length" {
			continue
		}
		out[k] = v
	}
	return out
}

// copyHeaders copies the daemon's response headers to dst, less the
// hop-by-hop ones.
func copyHeaders(dst, src http.Header) {
	named := connectionNamed(src)
	for k, v := range src {
		if hopHeaders[k] || named[k] {
			continue
		}
		dst[k] = v
	}
}

// connectionNamed returns the headers that the Connection header declares
// hop-by-hop, in canonical form; nil when there are none.
func connectionNamed(h http.Header) map[string]bool {
	values := h["Connection"]
	if len(values) == 0 {
		return nil
	}
	named := make(map[string]bool)
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				named[textproto.CanonicalMIMEHeaderKey(name)] = true
			}
		}
	}
	return named
}
