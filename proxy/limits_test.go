package proxy

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(time.Second, 2)
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{100 * time.Millisecond, true, 0},
		{200 * time.Millisecond, false, 0},
		{300 * time.Millisecond, false, 0},
		{1100 * time.Millisecond, true, 2}, // a new window reports what was held back
		{1200 * time.Millisecond, true, 0},
		{1300 * time.Millisecond, false, 0},
	}
	for i, s := range steps {
		ok, sup := l.allow(t0.Add(s.at))
		if ok != s.ok || sup != s.suppressed {
			t.Errorf("step %d at %s: got %v %d, want %v %d", i, s.at, ok, sup, s.ok, s.suppressed)
		}
	}
}

// TestConnectionLimit checks max_connections: connections beyond it are
// closed at once, counted and logged, and a freed slot is usable again.
func TestConnectionLimit(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, "max_connections = 2"))
	cfg := &tls.Config{RootCAs: pki.ca.Pool(), ServerName: "sidecar.test",
		Certificates: []tls.Certificate{pki.client.TLSCertificate()}}

	var held []*tls.Conn
	for range 2 {
		c, err := tls.Dial("tcp", rp.metrics, cfg)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if _, err := tls.Dial("tcp", rp.metrics, cfg); err == nil {
		t.Fatal("a third connection was served with max_connections = 2")
	}
	rp.logs.waitForLog(t, "connection limit reached")

	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tls.Dial("tcp", rp.metrics, cfg)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	held[1].Close()

	// The proxy sees closed connections when its reads end; wait for it.
	var body string
	for {
		_, b, err := get(t, tlsClient(pki.ca.Pool(), pki.client.TLSCertificate()),
			"https://"+rp.metrics+"/proxy/metrics")
		if err == nil {
			body = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("own metrics unreachable after the connections closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := metricValue(t, body, "mtls_metrics_proxy_connections_refused_total"); got < 1 {
		t.Errorf("connections_refused_total = %v, want at least 1", got)
	}
}
