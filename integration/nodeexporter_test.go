package integration

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestNodeExporterBehindProxy puts the proxy in front of a daemon nobody
// here wrote, Debian's prometheus-node-exporter, and checks that what
// comes out of the proxy is what the exporter serves: the same metric
// families, the same content type and encoding, and the same value of a
// series that does not change. Prometheus then scrapes the same series
// through the proxy.
func TestNodeExporterBehindProxy(t *testing.T) {
	_, nodeAddr := startNodeExporter(t)
	k := newPKI(t)
	px := startProxy(t, k, proxyOptions{upstream: "http://" + nodeAddr})

	direct := mustScrape(t, plainClient(t), "http://"+nodeAddr+"/metrics")
	proxied := mustScrape(t, mtlsClient(t, k), px.metricsURL())
	if direct.status != 200 || proxied.status != 200 {
		t.Fatalf("status direct %d, through the proxy %d; want 200 for both\n%s",
			direct.status, proxied.status, proxied.body)
	}

	// The series the enabled collectors always produce arrive.
	families := metricFamilies(proxied.body)
	for _, want := range []string{
		"node_cpu_seconds_total", "node_load1", "node_memory_MemTotal_bytes",
		"node_boot_time_seconds", "node_time_seconds", "node_uname_info",
	} {
		if !slices.Contains(families, want) {
			t.Errorf("metric family %s missing through the proxy", want)
		}
	}
	if d := metricFamilies(direct.body); !slices.Equal(d, families) {
		t.Errorf("metric families differ:\ndirect:  %v\nproxied: %v", d, families)
	}

	// Headers and encoding pass through untouched.
	ctProxied, ctDirect := proxied.header.Get("Content-Type"), direct.header.Get("Content-Type")
	if ctProxied != ctDirect {
		t.Errorf("Content-Type through the proxy %q, direct %q", ctProxied, ctDirect)
	}
	if direct.gzipped && !proxied.gzipped {
		t.Errorf("node_exporter answered with gzip, the proxy without")
	}

	memTotal := sampleValue(t, direct.body, "node_memory_MemTotal_bytes")
	if got := sampleValue(t, proxied.body, "node_memory_MemTotal_bytes"); got != memTotal {
		t.Errorf("node_memory_MemTotal_bytes through the proxy %v, direct %v", got, memTotal)
	}

	t.Run("via Prometheus", func(t *testing.T) {
		promBin := requireProgram(t, "prometheus")
		const job = "node-mtls"
		prom := startPrometheus(t, promBin, k, []promJob{
			{name: job, target: px.addr, clientCert: true},
		})
		s := prom.waitQuery(t, fmt.Sprintf(`node_memory_MemTotal_bytes{job=%q}`, job))
		got, err := strconv.ParseFloat(s.value(), 64)
		if err != nil || got != memTotal {
			t.Errorf("Prometheus has node_memory_MemTotal_bytes = %q, want %v",
				s.value(), memTotal)
		}
	})
}

// metricFamilies returns the sorted names in the # TYPE lines of a text
// exposition.
func metricFamilies(body string) []string {
	var names []string
	for line := range strings.Lines(body) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	slices.Sort(names)
	return names
}

// sampleValue returns the value of the unlabelled series name in a text
// exposition.
func sampleValue(t testing.TB, body, name string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("parsing %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no sample of %s in:\n%s", name, body)
	return 0
}
