package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// TestExampleKubernetesSidecarAnswers runs the proxy with the config of the
// Kubernetes example, in front of diagd, and asks it what the kubelet and
// Prometheus would: the probes' paths on the health listener, and the
// daemon's and the proxy's own metrics paths over mTLS with the dev-certs client certificate
// (common name prometheus). Only what cannot hold on this machine is
// changed: listeners on 127.0.0.1 ports of the kernel's choosing, the
// upstream at diagd's address, certificates from dev-certs, JSON logs.
// Identity rules and paths stay as written.
func TestExampleKubernetesSidecarAnswers(t *testing.T) {
	m := loadK8sManifests(t)
	if len(m.deployments) == 0 {
		t.Fatal("no Deployment in the Kubernetes examples")
	}
	pod := m.deployments[0].Spec.Template.Spec
	container, ok := findContainer(pod, proxyContainerName)
	if !ok {
		t.Fatalf("no container named %q", proxyContainerName)
	}
	text := mountedProxyConfigText(t, m, pod, container)
	cfg := parseExampleProxyConfig(t, text)

	k := newPKI(t)
	_, diagdAddr := startDiagd(t, "127.0.0.1:0")
	doc := decodeProxyConfig(t, text)
	pointAtPKI(t, doc, k)
	setKey(doc, "metrics_service.listen_addr", "127.0.0.1:0")
	setKey(doc, "health.listen_addr", "127.0.0.1:0")
	setKey(doc, "upstream.url", "http://"+diagdAddr)
	setKey(doc, "log.format", "json")
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "mtls-metrics-proxy", proxyBin, "run", "--config",
		writeFile(t, "proxy.toml", b.String()))
	addr := func(listener string) string {
		return p.waitLog(t, listener+" listener's address", func(e logEntry) bool {
			return e.str("@message") == "listening" && e.str("listener") == listener
		}).str("addr")
	}
	metricsAddr, healthAddr := addr("metrics"), addr("health")

	plain := plainClient(t)
	for _, probe := range []*k8sProbe{container.LivenessProbe, container.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Fatal("the proxy container lacks an httpGet liveness or readiness probe")
		}
		path := probe.HTTPGet.Path
		eventually(t, 30*time.Second, "GET "+path+" on the health listener", func() error {
			return wantStatus(plain, "http://"+healthAddr+path, http.StatusOK)
		})
	}
	client := mtlsClient(t, k)
	for _, path := range []string{cfg.metricsPath(), cfg.ownMetricsPath()} {
		if err := wantStatus(client, "https://"+metricsAddr+path, http.StatusOK); err != nil {
			t.Errorf("scraping %s as prometheus: %v", path, err)
		}
	}
}

// wantStatus GETs url and fails unless the status is want.
func wantStatus(c *http.Client, url string, want int) error {
	r, err := scrape(c, url)
	if err != nil {
		return err
	}
	if r.status != want {
		return fmt.Errorf("status %d, want %d: %s", r.status, want, r.body)
	}
	return nil
}

// setKey sets a dotted key such as "health.listen_addr", making its table
// when it is missing.
func setKey(doc map[string]any, dotted string, value any) {
	i := strings.LastIndex(dotted, ".")
	table, key := dotted[:i], dotted[i+1:]
	sec, ok := doc[table].(map[string]any)
	if !ok {
		sec = map[string]any{}
		doc[table] = sec
	}
	sec[key] = value
}
