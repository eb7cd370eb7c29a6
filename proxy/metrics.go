package proxy

import (
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// metricsNamespace prefixes every metric of the proxy's own.
const metricsNamespace = "mtls_metrics_proxy"

// proxyMetrics are the proxy's own metrics. They live on a registry of
// their own, served on a path of their own, and never mix with the
// daemon's body.
type proxyMetrics struct {
	reg *prometheus.Registry

	requests          *prometheus.CounterVec
	refused           *prometheus.CounterVec
	handshakeFailures *prometheus.CounterVec
	upstreamErrors    *prometheus.CounterVec
	upstreamDuration  prometheus.Histogram
	responseBytes     prometheus.Counter

	connectionsRefused prometheus.Counter
}

func newProxyMetrics(p *Proxy, build BuildInfo) *proxyMetrics {
	m := &proxyMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "requests_total",
			Help:      "Requests on the metrics listener, by status code and outcome.",
		}, []string{"code", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "refused_requests_total",
			Help: "Requests on the metrics listener answered by the proxy itself, " +
				"by reason: path, method, identity, peer_cert_expired, " +
				"peer_untrusted_after_reload.",
		}, []string{"reason"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "tls_handshake_failures_total",
			Help:      "Failed TLS handshakes on the metrics listener, by reason.",
		}, []string{"reason"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "upstream_errors_total",
			Help: "Scrapes that failed on the way to or from the daemon, by kind: " +
				"dial, timeout, protocol, body_copy, canceled.",
		}, []string{"kind"}),
		upstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:                       metricsNamespace,
			Name:                            "upstream_request_duration_seconds",
			Help:                            "Time from forwarding a scrape to the end of its body.",
			Buckets:                         []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}),
		responseBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "response_body_bytes_total",
			Help:      "Response body bytes sent to scrapers from the daemon.",
		}),
	}

	m.connectionsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "connections_refused_total",
		Help:      "Connections to the metrics listener closed because max_connections were open.",
	})
	connsOpen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "connections_open",
		Help:      "Connections open on the metrics listener, handshakes included.",
	}, func() float64 {
		if l := p.metricsListener.Load(); l != nil {
			return float64(l.Open())
		}
		return 0
	})

	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "requests_in_flight",
		Help:      "Scrapes being forwarded to the daemon right now.",
	}, func() float64 { return float64(p.inFlight.Load()) })

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "build_info",
		Help:      "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version": build.Version, "revision": build.Revision, "goversion": runtime.Version(),
		},
	})
	buildInfo.Set(1)

	// Every label value that can occur exists from the start at zero, so
	// that rate() and absent-based alerts see a series before the first
	// failure.
	for _, r := range policy.HandshakeReasons() {
		m.handshakeFailures.WithLabelValues(string(r))
	}
	for _, f := range []upstream.Failure{upstream.FailureDial, upstream.FailureTimeout,
		upstream.FailureProtocol, upstream.FailureBodyCopy, upstream.FailureCanceled} {
		m.upstreamErrors.WithLabelValues(string(f))
	}
	for _, r := range []string{"path", "method", "identity", "peer_cert_expired",
		"peer_untrusted_after_reload"} {
		m.refused.WithLabelValues(r)
	}

	m.reg.MustRegister(m.requests, m.refused, m.handshakeFailures, m.upstreamErrors,
		m.upstreamDuration, m.responseBytes, inFlight, buildInfo, m.connectionsRefused, connsOpen,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if p.certs != nil {
		m.reg.MustRegister(&certCollector{r: p.certs})
	}
	return m
}

// handler serves the registry.
func (m *proxyMetrics) handler(log hclog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          stdLogger(log, hclog.Warn),
		EnableOpenMetrics: true,
		Registry:          m.reg,
	})
}

// scrapeDone records a forwarded scrape.
func (m *proxyMetrics) scrapeDone(res upstream.Result, seconds float64) {
	outcome := "forwarded"
	if res.Failure != "" {
		outcome = "upstream_error"
		if res.Failure == upstream.FailureCanceled {
			outcome = "canceled"
		}
		m.upstreamErrors.WithLabelValues(string(res.Failure)).Inc()
	}
	m.requests.WithLabelValues(statusLabel(res.Status), outcome).Inc()
	m.upstreamDuration.Observe(seconds)
	m.responseBytes.Add(float64(res.Bytes))
}

// requestRefused records a request the proxy answered itself.
func (m *proxyMetrics) requestRefused(reason string, status int) {
	m.refused.WithLabelValues(reason).Inc()
	m.requests.WithLabelValues(statusLabel(status), "refused").Inc()
}

func (m *proxyMetrics) handshakeFailed(reason policy.Reason) {
	m.handshakeFailures.WithLabelValues(string(reason)).Inc()
}

// statusLabel spells a status code for a label; 0 (nothing sent) is
// "none".
func statusLabel(code int) string {
	if code > 0 && code < len(statusText) {
		return statusText[code]
	}
	if code == 0 {
		return "none"
	}
	return strconv.Itoa(code)
}

// statusText holds the label of every valid status code, so that
// labelling a request does not allocate.
var statusText = func() []string {
	s := make([]string, 600)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// certCollector exports the certificate inventory and reload outcomes
// from the reloader's current state at each scrape, so that the values
// follow reloads with nothing to unregister.
type certCollector struct {
	r *certReloader
}

var (
	certNotAfterDesc = prometheus.NewDesc(metricsNamespace+
		"_certificate_not_after_timestamp_seconds",
		"When each server certificate and client CA in service expires.",
		[]string{"kind", "file", "subject", "serial"}, nil)
	reloadsDesc = prometheus.NewDesc(metricsNamespace+"_certificate_reloads_total",
		"Certificate reloads, by result.", []string{"result"}, nil)
	lastReloadDesc = prometheus.NewDesc(metricsNamespace+
		"_certificate_last_reload_success_timestamp_seconds",
		"When the certificates in service were loaded.", nil, nil)
)

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certNotAfterDesc
	ch <- reloadsDesc
	ch <- lastReloadDesc
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.r.Current()
	for _, ci := range snap.material.inventory(c.r.ms) {
		ch <- prometheus.MustNewConstMetric(certNotAfterDesc, prometheus.GaugeValue,
			float64(ci.NotAfter.Unix()), ci.Kind, ci.File, ci.Subject, ci.Serial)
	}
	st := &c.r.stats
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue,
		float64(st.success.Load()), "success")
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue,
		float64(st.failure.Load()), "failure")
	ch <- prometheus.MustNewConstMetric(lastReloadDesc, prometheus.GaugeValue,
		float64(st.lastSuccess.Load()))
}

// BuildInfo names the running build in the proxy's own metrics.
type BuildInfo struct {
	Version, Revision string
}
