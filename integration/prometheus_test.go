package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestPrometheusScrapesThroughProxy puts a real Prometheus in front of the
// proxy, which sits in front of diagd. The job with a client certificate
// must be up and deliver diagd's series under its own job label. The job
// without one is case C01(a): it must be down because the proxy refused
// the TLS handshake, and none of diagd's series may reach Prometheus
// through it.
func TestPrometheusScrapesThroughProxy(t *testing.T) {
	promBin := requireProgram(t, "prometheus")
	k := newPKI(t)
	_, diagdAddr := startDiagd(t, "127.0.0.1:0")
	px := startProxy(t, k, proxyOptions{upstream: "http://" + diagdAddr})

	const withCert, withoutCert = "diagd-mtls", "diagd-no-client-cert"
	prom := startPrometheus(t, promBin, k, []promJob{
		{name: withCert, target: px.addr, clientCert: true},
		{name: withoutCert, target: px.addr},
	})

	// The targets: up with a client certificate, down without one.
	up := prom.waitTarget(t, withCert, func(tg promTarget) error {
		if tg.Health != "up" {
			return fmt.Errorf("health %q, lastError %q", tg.Health, tg.LastError)
		}
		return nil
	})
	if up.ScrapeURL != px.metricsURL() {
		t.Errorf("scrape URL %q, want %q", up.ScrapeURL, px.metricsURL())
	}
	down := prom.waitTarget(t, withoutCert, func(tg promTarget) error {
		if tg.Health != "down" || !isHandshakeRefusal(tg.LastError) {
			return fmt.Errorf("health %q, lastError %q; want down with a TLS alert "+
				"about the certificate", tg.Health, tg.LastError)
		}
		return nil
	})
	t.Logf("job %s is down: %s", withoutCert, down.LastError)

	// diagd's series, queryable under the job that presented a certificate.
	s := prom.waitQuery(t, fmt.Sprintf(`diagd_up{job=%q}`, withCert))
	if s.value() != "1" || s.Metric["instance"] != px.addr {
		t.Errorf("diagd_up sample = %v, want value 1 and instance %s", s, px.addr)
	}

	// The proxy's side of the refusal: one line with the reason.
	px.waitLog(t, "a refused handshake without client certificate", func(e logEntry) bool {
		return e.str("@message") == "TLS handshake refused" &&
			e.str("reason") == "no_client_cert"
	})

	// Nothing leaked to the job without a certificate. Checked last, after
	// it has had several scrape intervals to leak in.
	leaked, err := prom.query(fmt.Sprintf(`{job=%q, __name__=~"diagd_.*|go_.*"}`, withoutCert))
	if err != nil {
		t.Fatalf("querying for leaked series: %v", err)
	}
	if len(leaked) > 0 {
		t.Errorf("job %s without client certificate got %d series, e.g. %v",
			withoutCert, len(leaked), leaked[0].Metric)
	}
}

// isHandshakeRefusal reports whether a scrape error is the TLS alert a
// server sends when it refuses the client's certificate, or the lack of
// one: "remote error" means the peer sent the alert, and TLS 1.3 calls it
// "certificate required", TLS 1.2 "bad certificate". Any other error, a
// timeout or an untrusted server certificate, means the test is broken.
func isHandshakeRefusal(lastError string) bool {
	return strings.Contains(lastError, "remote error: tls:") &&
		strings.Contains(lastError, "certificate")
}
