package serve

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/body"
)

// MetricsPath is the one path the servers answer.
const MetricsPath = "/metrics"

// contentType is what client_golang's promhttp answers to a Prometheus 3
// Accept header when OpenMetrics is not enabled: the classic text format.
const contentType = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"

// writeChunk is the size of each Write to the response. promhttp writes
// family by family through a buffered writer; 32 KiB slices give the same
// pattern of a chunked body arriving in a few dozen writes per MiB.
const writeChunk = 32 << 10

// Content is the body a server answers with, prepared once at start.
type Content struct {
	// Identity is the body as generated.
	Identity []byte
	// Gzip is Identity compressed, or nil when gzip is not offered.
	Gzip []byte
}

// NewContent generates a body of size bytes and, with withGzip, its gzip
// encoding.
func NewContent(size int, withGzip bool) (*Content, error) {
	c := &Content{Identity: body.Generate(size)}
	if withGzip {
		gz, err := body.Gzip(c.Identity)
		if err != nil {
			return nil, err
		}
		c.Gzip = gz
	}
	return c, nil
}

// Handler answers GET and HEAD of [MetricsPath] with c, like a daemon's
// promhttp handler: no Content-Length, so the body goes out chunked, and
// the gzip encoding when the scraper accepts it and c has one. Other paths
// get 404 and other methods 405.
func Handler(c *Content) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != MetricsPath {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}

		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Vary", "Accept-Encoding")
		data := c.Identity
		if c.Gzip != nil && AcceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			data = c.Gzip
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		for len(data) > 0 {
			n := min(len(data), writeChunk)
			if _, err := w.Write(data[:n]); err != nil {
				return // the scraper went away
			}
			data = data[n:]
		}
	})
}

// AcceptsGzip reports whether an Accept-Encoding value allows gzip: it
// names gzip (or *) with a non-zero quality (RFC 9110, section 12.5.3).
func AcceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		return quality(params) > 0
	}
	return false
}

// quality reads the q parameter of an Accept-Encoding element; absent or
// unreadable, it is 1.
func quality(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || strings.ToLower(strings.TrimSpace(k)) != "q" {
			continue
		}
		if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			return q
		}
	}
	return 1
}
