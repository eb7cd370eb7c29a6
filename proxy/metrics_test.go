package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// metricValue returns the value of the sample written exactly as series
// (name and labels as client_golang renders them) in a text exposition.
func metricValue(t testing.TB, body, series string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return 0 // counters with no sample yet are zero
}

// TestOwnMetrics checks that the proxy's own metrics are served behind mTLS
// on their own path, apart from the daemon's, and that each counter moves
// when its event happens.
func TestOwnMetrics(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL,
		`client_allowed_common_names = ["prometheus.test"]`+"\n"+`reload_interval = "1h"`))
	good := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	own := "https://" + rp.metrics + "/proxy/metrics"

	scrapeOwn := func() string {
		t.Helper()
		status, body, err := get(t, good, own)
		if err != nil || status != 200 {
			t.Fatalf("own metrics: %d %v", status, err)
		}
		return body
	}
	before := scrapeOwn()

	// One of everything.
	if status, body, _ := get(t, good, "https://"+rp.metrics+"/metrics"); status != 200 ||
		strings.Contains(body, "mtls_metrics_proxy_") {
		t.Fatalf("scrape: %d, body mixes in the proxy's metrics: %q", status, body)
	}
	get(t, good, "https://"+rp.metrics+"/debug/pprof/")
	other := mustIssue(t, pki.ca, devpki.ClientTemplate("grafana.test"))
	get(t, tlsClient(pki.ca.Pool(), other.TLSCertificate()), "https://"+rp.metrics+"/metrics")
	get(t, tlsClient(pki.ca.Pool()), "https://"+rp.metrics+"/metrics")
	rp.logs.waitForLog(t, "reason=no_client_cert")
	next := mustIssue(t, pki.ca, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
	atomicRename(t, pki.dir, next)
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}

	after := scrapeOwn()
	deltas := []struct {
		series string
		want   float64
	}{
		{`mtls_metrics_proxy_requests_total{code="200",outcome="forwarded"}`, 1},
		{`mtls_metrics_proxy_refused_requests_total{reason="path"}`, 1},
		{`mtls_metrics_proxy_refused_requests_total{reason="identity"}`, 1},
		{`mtls_metrics_proxy_requests_total{code="403",outcome="refused"}`, 1},
		{`mtls_metrics_proxy_tls_handshake_failures_total{reason="no_client_cert"}`, 1},
		{`mtls_metrics_proxy_certificate_reloads_total{result="success"}`, 1},
		{`mtls_metrics_proxy_upstream_request_duration_seconds_count`, 1},
		{`mtls_metrics_proxy_response_body_bytes_total`, float64(len("upstream_up 1\n"))},
	}
	for _, d := range deltas {
		got := metricValue(t, after, d.series) - metricValue(t, before, d.series)
		if got != d.want {
			t.Errorf("%s went up by %v, want %v", d.series, got, d.want)
		}
	}

	// The new certificate's expiry is exported, the old one's is gone.
	serial := next.Cert.SerialNumber.Text(16)
	if !strings.Contains(after, `serial="`+serial+`"`) ||
		strings.Contains(after, `serial="`+pki.server.Cert.SerialNumber.Text(16)+`"`) {
		t.Error("certificate expiry does not follow the reload")
	}
	caSeries := fmt.Sprintf(`kind="client_ca",serial="%s",subject="%s"`,
		pki.ca.Cert.SerialNumber.Text(16), pki.ca.Cert.Subject)
	if !strings.Contains(after, caSeries) ||
		!strings.Contains(after, fmt.Sprintf("%g", float64(pki.ca.Cert.NotAfter.Unix()))) {
		t.Errorf("no CA expiry series with %s", caSeries)
	}
	for _, name := range []string{"mtls_metrics_proxy_build_info{", "go_goroutines ",
		"process_resident_memory_bytes ", "mtls_metrics_proxy_requests_in_flight 0"} {
		if !strings.Contains(after, name) {
			t.Errorf("own metrics lack %q", name)
		}
	}

	// A client no identity rule allows cannot read them either.
	status, _, _ := get(t, tlsClient(pki.ca.Pool(), other.TLSCertificate()), own)
	if status != http.StatusForbidden {
		t.Errorf("own metrics for a disallowed identity: %d, want 403", status)
	}
}

func TestUpstreamErrorsAreCounted(t *testing.T) {
	pki := newTestPKI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rp := startProxy(t, pki.dir, baseConfig(pki, "http://"+addr, ""))
	c := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())

	get(t, c, "https://"+rp.metrics+"/metrics")
	_, body, _ := get(t, c, "https://"+rp.metrics+"/proxy/metrics")
	for series, want := range map[string]float64{
		`mtls_metrics_proxy_upstream_errors_total{kind="dial"}`:                  1,
		`mtls_metrics_proxy_requests_total{code="502",outcome="upstream_error"}`: 1,
	} {
		if got := metricValue(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestHealthListener checks /healthz and /readyz for an upstream that is
// down, then up.
func TestHealthListener(t *testing.T) {
	pki := newTestPKI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cfg := baseConfig(pki, "http://"+addr, "") + "\n[health]\nlisten_addr = \"127.0.0.1:0\"\n"
	rp := startProxy(t, pki.dir, cfg)
	health := "http://" + rp.Addr("health").String()

	status, body, err := get(t, http.DefaultClient, health+"/healthz")
	if err != nil || status != 200 {
		t.Fatalf("/healthz: %d %v", status, err)
	}
	status, body, _ = get(t, http.DefaultClient, health+"/readyz")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "upstream not answering") {
		t.Fatalf("/readyz with the upstream down: %d %q", status, body)
	}
	if strings.Count(strings.TrimSpace(body), "\n") != 0 {
		t.Errorf("reason is not one line: %q", body)
	}

	// Bring the upstream up on that address. The failed probe is cached
	// briefly; a scrape that succeeds makes the proxy ready at once.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not take the port back: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "upstream_up 1")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	if status, _, err := get(t, c, "https://"+rp.metrics+"/metrics"); status != 200 {
		t.Fatalf("scrape: %d %v", status, err)
	}
	status, body, _ = get(t, http.DefaultClient, health+"/readyz")
	if status != 200 {
		t.Errorf("/readyz with the upstream up: %d %q", status, body)
	}
	if status, _, _ := get(t, http.DefaultClient, health+"/metrics"); status != 404 {
		t.Errorf("/metrics on the health listener: %d, want 404", status)
	}
}

// TestReadinessProbesTheUpstream checks that with no recent scrape,
// /readyz asks the daemon itself.
func TestReadinessProbesTheUpstream(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir,
		baseConfig(pki, up.URL, "")+"\n[health]\nlisten_addr = \"127.0.0.1:0\"\n")
	health := "http://" + rp.Addr("health").String()

	for range 3 {
		status, body, _ := get(t, http.DefaultClient, health+"/readyz")
		if status != 200 {
			t.Fatalf("/readyz: %d %q", status, body)
		}
	}
	var heads int
	for _, r := range up.requests() {
		if r.Method == http.MethodHead && r.URL.Path == "/metrics" {
			heads++
		}
	}
	if heads != 1 {
		t.Errorf("the daemon was probed %d times for 3 readiness checks, want 1", heads)
	}
}

// TestKeepMetricsOnDiag checks the migration aid: with diag.keep_metrics
// the metrics path is served on both listeners, with a warning.
func TestKeepMetricsOnDiag(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, strings.Replace(baseConfig(pki, up.URL, ""),
		"[diag]\n", "[diag]\nkeep_metrics = true\n", 1))

	status, body, err := get(t, http.DefaultClient, "http://"+rp.diag+"/metrics")
	if err != nil || status != 200 || body != "upstream_up 1\n" {
		t.Errorf("diag /metrics during the transition: %d %q %v", status, body, err)
	}
	c := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	if status, _, err := get(t, c, "https://"+rp.metrics+"/metrics"); status != 200 {
		t.Errorf("mTLS /metrics: %d %v", status, err)
	}
	rp.logs.waitForLog(t, "keep_metrics = true")
}
