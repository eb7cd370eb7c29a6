package proxy

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// maxLoggedPath bounds how much of a refused request's path reaches the
// log, so that a hostile client cannot fill it.
const maxLoggedPath = 256

// scrapeHandler serves the metrics listener: it lets exactly the metrics
// path through to the daemon and answers everything else itself.
type scrapeHandler struct {
	rule     policy.PathRule
	fwd      *upstream.Forwarder
	log      hclog.Logger
	inFlight *atomic.Int64
	identity *policy.Identity
	current  func() *snapshot // nil without mTLS
	metrics  *proxyMetrics

	ownRule policy.PathRule
	own     http.Handler // the proxy's own metrics; nil when turned off

	// upstreamOK is when the daemon last answered a scrape, in Unix
	// nanoseconds; readiness reads it.
	upstreamOK *atomic.Int64

	// refusals limits the log lines about refused requests.
	refusals *logLimiter
}

func (h *scrapeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
		// No request here has a body worth reading, but net/http reads
		// up to 256 KiB of an unread one before it answers, and nothing
		// bounds a client that sends it a byte at a time. Stop reading
		// now, and close the connection after the answer.
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}

	verdict, rawQuery, hasQuery := h.rule.Decide(r.Method, r.RequestURI)
	own := false
	if verdict == policy.NotFound && h.own != nil {
		if v, _, _ := h.ownRule.Decide(r.Method, r.RequestURI); v != policy.NotFound {
			verdict, own = v, true
		}
	}
	switch verdict {
	case policy.NotFound:
		h.refuse(w, r, verdict, http.StatusNotFound)
		return
	case policy.MethodNotAllowed:
		w.Header().Set("Allow", "GET, HEAD")
		h.refuse(w, r, verdict, http.StatusMethodNotAllowed)
		return
	}

	if reason, detail := h.authorize(r); reason != "" {
		h.deny(w, r, reason, detail)
		return
	}
	if own {
		h.own.ServeHTTP(w, r)
		return
	}

	h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	if ci := connInfoFrom(r.Context()); ci != nil && ci.flush != nil {
		w = &connFlushWriter{ResponseWriter: w, flush: ci.flush}
	}
	start := time.Now()
	res := h.fwd.Forward(w, r, rawQuery, hasQuery)
	elapsed := time.Since(start)
	if res.Failure == "" {
		h.upstreamOK.Store(time.Now().UnixNano())
	}
	h.metrics.scrapeDone(res, elapsed.Seconds())
	h.logScrape(r, res, elapsed)

	if res.Aborted {
		// Cut the connection (or the HTTP/2 stream) so that the scraper
		// sees a broken transfer, never a clean 200 with half a body.
		panic(http.ErrAbortHandler)
	}
}

// authorize judges the client behind an mTLS connection, per request: its
// identity against the allow-lists, and its chain against what is trusted
// now, since a keep-alive connection can outlive both the client's
// certificate and a CA that was dropped or a revocation made since the
// handshake. It returns the reason for a refusal, or "".
func (h *scrapeHandler) authorize(r *http.Request) (reason, detail string) {
	ci := connInfoFrom(r.Context())
	if ci == nil || h.current == nil {
		return "", ""
	}
	now := time.Now()
	if now.After(ci.notAfter) {
		return "peer_cert_expired", "the client certificate expired during the connection"
	}
	if err := ci.stillTrusted(h.current(), now); err != nil {
		return "peer_untrusted_after_reload", err.Error()
	}
	if !h.identity.Allow(ci.leaf) {
		return "identity", "no client identity rule allows this certificate"
	}
	return "", ""
}

// deny answers 403 for a client that completed the handshake but may not
// scrape. The log names what the certificate carried, not the rules, so
// that reading the log does not teach which identity would pass.
func (h *scrapeHandler) deny(w http.ResponseWriter, r *http.Request, reason, detail string) {
	h.metrics.requestRefused(reason, http.StatusForbidden)
	if ok, held := h.refusals.allow(time.Now()); ok && h.log.IsInfo() {
		ci := connInfoFrom(r.Context())
		args := append([]any{"reason", reason, "detail", detail, "remote_addr", r.RemoteAddr},
			policy.Describe(ci.leaf)...)
		if held > 0 {
			args = append(args, "similar_lines_suppressed", held)
		}
		h.log.Info("client refused", args...)
	}

	body := "client certificate not allowed\n"
	if reason != "identity" {
		// The connection's trust is stale: make the client come back
		// with a fresh handshake.
		w.Header().Set("Connection", "close")
		body = "client certificate no longer trusted; reconnect\n"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	_, _ = fmt.Fprint(w, body)
}

func (h *scrapeHandler) refuse(w http.ResponseWriter, r *http.Request, v policy.Verdict,
	status int) {
	h.metrics.requestRefused(v.String(), status)
	if ok, held := h.refusals.allow(time.Now()); ok && h.log.IsInfo() {
		args := []any{"reason", v.String(), "status", status,
			"method", truncate(r.Method, 16), "target", truncate(r.RequestURI, maxLoggedPath),
			"remote_addr", r.RemoteAddr, "peer", peerName(r)}
		if held > 0 {
			args = append(args, "similar_lines_suppressed", held)
		}
		h.log.Info("request refused", args...)
	}
	http.Error(w, http.StatusText(status), status)
}

func (h *scrapeHandler) logScrape(r *http.Request, res upstream.Result, d time.Duration) {
	if res.Failure == "" {
		if h.log.IsDebug() {
			h.log.Debug("scrape", "status", res.Status, "bytes", res.Bytes,
				"duration", d.String(), "remote_addr", r.RemoteAddr, "peer", peerName(r))
		}
		return
	}
	level := hclog.Warn
	if res.Failure == upstream.FailureCanceled {
		level = hclog.Debug
	}
	h.log.Log(level, "scrape failed", "failure", string(res.Failure), "status", res.Status,
		"bytes", res.Bytes, "duration", d.String(), "err", errString(res.Err),
		"remote_addr", r.RemoteAddr, "peer", peerName(r))
}

// connFlushWriter makes a flush of the response reach the socket on a
// connection whose writes are coalesced (see coalescingConn).
type connFlushWriter struct {
	http.ResponseWriter
	flush func() error
}

// Flush flushes the HTTP server's buffer, then the connection's.
func (w *connFlushWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	_ = w.flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *connFlushWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// peerName is the client certificate's subject, for logs.
func peerName(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.String()
}

// truncate shortens s for a log line and escapes control bytes and
// invalid UTF-8, so that a hostile request cannot forge log lines.
func truncate(s string, n int) string {
	cut := len(s) > n
	if cut {
		s = s[:n]
	}
	q := strconv.QuoteToASCII(s)
	q = q[1 : len(q)-1]
	if cut {
		q += "..."
	}
	return q
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// diagHandler serves the clear-text diag listener: everything goes to the
// daemon, except the metrics path while the metrics service holds it.
type diagHandler struct {
	rule         policy.PathRule
	blockMetrics bool
	hint         string
	proxy        *httputil.ReverseProxy
	log          hclog.Logger
}

func newDiagHandler(cfg *Config, transport http.RoundTripper, log hclog.Logger) *diagHandler {
	addr := cfg.Upstream.Address
	h := &diagHandler{
		rule:         policy.PathRule{Path: cfg.Upstream.MetricsPath},
		blockMetrics: cfg.MetricsService.Enabled && !cfg.Diag.KeepMetrics,
		log:          log,
	}
	if h.blockMetrics {
		h.hint = fmt.Sprintf("%s moved to the mTLS metrics listener on %s\n",
			cfg.Upstream.MetricsPath, cfg.MetricsService.ListenAddr)
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr.Host
			pr.SetXForwarded()
		},
		Transport: transport,
		// pprof and trace stream their output; pass it on as it comes.
		FlushInterval: -1,
		ErrorLog:      stdLogger(log, hclog.Warn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("diag request failed", "path", truncate(r.URL.Path, maxLoggedPath),
				"err", err.Error())
			http.Error(w, "upstream unavailable", http.StatusBadGateway)
		},
	}
	return h
}

func (h *diagHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Any spelling of the metrics path that the daemon might route to its
	// metrics handler is refused here; otherwise /metrics/ or /%6detrics
	// would read the metrics in clear text past the mTLS listener.
	if h.blockMetrics && h.rule.LooksLike(r.RequestURI) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprint(w, h.hint)
		return
	}
	h.proxy.ServeHTTP(w, r)
}
