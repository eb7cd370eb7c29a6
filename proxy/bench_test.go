package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// benchBody is a Prometheus-looking body of about n bytes.
func benchBody(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(`bench_requests_total{handler="/api/v1/items",code="200",instance="`)
		b.WriteString(strconv.Itoa(i))
		b.WriteString("\"} 123456\n")
	}
	return b.Bytes()[:n]
}

// benchProxy starts an upstream serving body, chunked as promhttp does,
// and a proxy in front of it; it returns the metrics address and the PKI.
func benchProxy(b *testing.B, body []byte) (*runningProxy, *testPKI) {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	pki := newTestPKI(b)
	cfg := baseConfig(pki, up.URL, "") + "\n"
	cfg = string(bytes.Replace([]byte(cfg), []byte(`level = "debug"`), []byte(`level = "info"`), 1))
	return startProxy(b, pki.dir, cfg), pki
}

func benchmarkScrape(b *testing.B, size int, newConn bool) {
	body := benchBody(size)
	rp, pki := benchProxy(b, body)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pki.ca.Pool(),
			Certificates: []tls.Certificate{pki.client.TLSCertificate()}},
		DisableKeepAlives: newConn,
	}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	url := "https://" + rp.metrics + "/metrics"

	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(size) {
			b.Fatalf("read %d bytes, want %d", n, size)
		}
	}
}

// BenchmarkScrape measures a whole scrape through the proxy: client,
// proxy and upstream share the process, so compare runs, not absolutes.
func BenchmarkScrape(b *testing.B) {
	b.Run("keepalive/100KiB", func(b *testing.B) { benchmarkScrape(b, 100<<10, false) })
	b.Run("keepalive/1MiB", func(b *testing.B) { benchmarkScrape(b, 1<<20, false) })
	b.Run("newconn/100KiB", func(b *testing.B) { benchmarkScrape(b, 100<<10, true) })
}

// BenchmarkHandshake measures a full mTLS handshake under the metrics
// listener's configuration, client certificate verification included.
func BenchmarkHandshake(b *testing.B) {
	pki := newTestPKI(b)
	path := writeFile(b, pki.dir, "proxy.toml",
		[]byte(baseConfig(pki, "http://127.0.0.1:1", `client_allowed_common_names = ["x"]`)), 0o644)
	cfg, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	r, err := newCertReloader(cfg, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	serverCfg := r.Current().tls
	clientCfg := &tls.Config{RootCAs: pki.ca.Pool(), ServerName: "sidecar.test",
		Certificates: []tls.Certificate{pki.client.TLSCertificate()}}

	b.ReportAllocs()
	for b.Loop() {
		cc, sc := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			errc <- tls.Server(sc, serverCfg).Handshake()
			sc.Close()
		}()
		c := tls.Client(cc, clientCfg)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		cc.Close()
	}
}
