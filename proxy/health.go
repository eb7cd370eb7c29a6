package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

const (
	// upstreamFresh is how recent the daemon's last answer to a scrape
	// must be for readiness to take it as alive without asking again. It
	// is longer than common scrape intervals, so that probes rarely add
	// load of their own.
	upstreamFresh = 2 * time.Minute
	// probeCache is how long a probe's answer stands for later probes.
	probeCache = 10 * time.Second
	// probeTimeout bounds one probe of the daemon.
	probeTimeout = 2 * time.Second
)

// healthHandler serves the health listener for orchestrators, which cannot
// present client certificates: /healthz says the process serves, /readyz
// whether scrapes can succeed.
type healthHandler struct {
	p *Proxy

	mu        sync.Mutex // guards the last probe
	probedAt  time.Time
	probeErr  error
	probePath string
}

func (h *healthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case "/healthz":
		_, _ = fmt.Fprintln(w, "ok")
	case "/readyz":
		if reason := h.notReady(r.Context()); reason != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, reason)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	default:
		http.NotFound(w, r)
	}
}

// notReady returns why scrapes cannot succeed now, or "" when they can.
func (h *healthHandler) notReady(ctx context.Context) string {
	now := time.Now()
	if h.p.certs != nil {
		if !servable(h.p.certs.Current().material, now) {
			return "not ready: every server certificate has expired"
		}
	}

	if last := h.p.upstreamOK.Load(); last != 0 && now.Sub(time.Unix(0, last)) < upstreamFresh {
		return ""
	}
	if err := h.probe(ctx, now); err != nil {
		return "not ready: upstream not answering: " + err.Error()
	}
	return ""
}

// servable reports whether m holds a server certificate valid at now.
func servable(m *material, now time.Time) bool {
	for _, kp := range m.keypairs {
		if now.Before(kp.Leaf.NotAfter) {
			return true
		}
	}
	return false
}

// probe asks the daemon for the head of its metrics path; any HTTP answer
// counts as alive. Answers are cached so that frequent probes from several
// orchestrators cost the daemon at most one request per probeCache.
func (h *healthHandler) probe(ctx context.Context, now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.probedAt.IsZero() && now.Sub(h.probedAt) < probeCache {
		return h.probeErr
	}

	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	addr := h.p.cfg.Upstream.Address
	req, err := http.NewRequestWithContext(ctx, http.MethodHead,
		"http://"+addr.Host+h.p.cfg.Upstream.MetricsPath, http.NoBody)
	if err == nil {
		req.Header.Set("User-Agent", "mtls-metrics-proxy readiness probe")
		var resp *http.Response
		if resp, err = h.p.fwd.Transport().RoundTrip(req); err == nil {
			resp.Body.Close()
			h.p.upstreamOK.Store(time.Now().UnixNano())
		}
	}
	h.probedAt, h.probeErr = time.Now(), err
	return err
}
