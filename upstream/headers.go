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

// appendRequest appends to buf the request sent to the daemon: method,
// the fixed path with the raw query, the daemon's Host, and every
// end-to-end header of in. Accept, Accept-Encoding, User-Agent and the
// scrape timeout pass through untouched, so content negotiation stays
// between Prometheus and the daemon.
func appendRequest(buf []byte, method, host, path, rawQuery string, forceQuery bool,
	in http.Header) []byte {
	buf = append(buf, method...)
	buf = append(buf, ' ')
	buf = append(buf, path...)
	if rawQuery != "" || forceQuery {
		buf = append(buf, '?')
		buf = append(buf, rawQuery...)
	}
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, host...)
	buf = append(buf, "\r\n"...)

	named := connectionNamed(in)
	for k, vs := range in {
		if hopHeaders[k] || named[k] || k == "Content-Length" || k == "Host" ||
			!validHeaderName(k) {
			continue
		}
		for _, v := range vs {
			// net/http refuses such values on the way in already; checking
			// again keeps a request line from ever being split here.
			if !validHeaderValue(v) {
				continue
			}
			buf = append(buf, k...)
			buf = append(buf, ": "...)
			buf = append(buf, v...)
			buf = append(buf, "\r\n"...)
		}
	}
	return append(buf, "\r\n"...)
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
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
