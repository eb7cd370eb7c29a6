package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestOwnMetricsPassPromtool scrapes the proxy's own metrics after some
// traffic and hands them to promtool, which checks names, units, help and
// types against Prometheus conventions.
func TestOwnMetricsPassPromtool(t *testing.T) {
	promtool := requireProgram(t, "promtool")
	k := newPKI(t)
	_, diagdAddr := startDiagd(t, "127.0.0.1:0")
	px := startProxy(t, k, proxyOptions{upstream: "http://" + diagdAddr})
	c := mtlsClient(t, k)

	// Traffic of each kind, so that the labelled series exist.
	mustScrape(t, c, px.metricsURL())
	if r, err := scrape(c, "https://"+px.addr+"/debug/pprof/"); err != nil || r.status != 404 {
		t.Fatalf("pprof through the TLS port: %+v %v", r, err)
	}
	_, _ = scrape(plainClient(t), "https://"+px.addr+"/metrics")

	own := mustScrape(t, c, "https://"+px.addr+"/proxy/metrics")
	for _, want := range []string{
		"mtls_metrics_proxy_requests_total{", "mtls_metrics_proxy_refused_requests_total{",
		"mtls_metrics_proxy_upstream_request_duration_seconds_bucket{",
		"mtls_metrics_proxy_certificate_not_after_timestamp_seconds{",
		"mtls_metrics_proxy_build_info{",
	} {
		if !strings.Contains(own.body, want) {
			t.Errorf("own metrics lack %s", want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(own.body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
