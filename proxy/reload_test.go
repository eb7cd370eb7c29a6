package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// scrapeLoop scrapes over a new connection each time until stopped, so
// that every scrape makes a fresh handshake and sees the material then in
// service. It counts failures.
type scrapeLoop struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       func()
}

func startScrapeLoop(t testing.TB, addr string, roots *x509.CertPool,
	cert tls.Certificate) *scrapeLoop {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
		DisableKeepAlives: true,
	}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	l := &scrapeLoop{}
	wg.Go(func() {
		for ctx.Err() == nil {
			resp, err := c.Get("https://" + addr + "/metrics")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				l.failed.Add(1)
				l.lastErr.Store(err.Error())
			} else {
				l.ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	l.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(l.stop)
	return l
}

// servedSerial returns the serial of the certificate the listener serves
// to a client asking for sidecar.test.
func servedSerial(t testing.TB, addr string, pki *testPKI) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		ServerName:         "sidecar.test",
		InsecureSkipVerify: true, // the test reads the certificate itself
		Certificates:       []tls.Certificate{pki.client.TLSCertificate()},
	})
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitForSerial waits until the listener serves the certificate with the
// given serial.
func waitForSerial(t testing.TB, addr string, pki *testPKI, want *big.Int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := servedSerial(t, addr, pki)
		if got.Cmp(want) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %x after %s, want %x", got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rotation replaces the server keypair files in dir by some method.
type rotation func(t testing.TB, dir string, leaf *devpki.Leaf)

// atomicRename writes the new files beside the old and renames them over.
func atomicRename(t testing.TB, dir string, leaf *devpki.Leaf) {
	t.Helper()
	for name, data := range map[string][]byte{
		"server-key.pem": leaf.KeyPEM(), "server.pem": leaf.CertPEM(),
	} {
		tmp := writeFile(t, dir, "."+name+".tmp", data, 0o600)
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// inPlace truncates and rewrites each file, the key a little after the
// certificate, as a careless tool does (C13a, C13b).
func inPlace(t testing.TB, dir string, leaf *devpki.Leaf) {
	t.Helper()
	writeFile(t, dir, "server.pem", leaf.CertPEM(), 0o644)
	time.Sleep(400 * time.Millisecond)
	writeFile(t, dir, "server-key.pem", leaf.KeyPEM(), 0o600)
}

// k8sLayout lays the keypair out as a Kubernetes secret volume does:
// server.pem -> ..data/server.pem, ..data -> ..<timestamp>.
func k8sLayout(t testing.TB, dir string, leaf *devpki.Leaf) {
	t.Helper()
	for _, name := range []string{"server.pem", "server-key.pem"} {
		_ = os.Remove(filepath.Join(dir, name))
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	k8sSwap(t, dir, leaf)
}

var k8sVersion atomic.Int64

// k8sSwap writes a new timestamped folder and swaps the ..data symlink to
// it atomically, as the kubelet does (C13c).
func k8sSwap(t testing.TB, dir string, leaf *devpki.Leaf) {
	t.Helper()
	ver := fmt.Sprintf("..2026_12_03_%d", k8sVersion.Add(1))
	if err := os.Mkdir(filepath.Join(dir, ver), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ver), "server.pem", leaf.CertPEM(), 0o644)
	writeFile(t, filepath.Join(dir, ver), "server-key.pem", leaf.KeyPEM(), 0o600)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ver, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// TestReloadRotatesServerKeypair rotates the server keypair in each of the
// ways files really change, while a client scrapes in a loop: the new
// certificate is served within a second of the change, and no scrape
// fails.
func TestReloadRotatesServerKeypair(t *testing.T) {
	tests := []struct {
		name   string
		setup  rotation // lays out the first keypair; nil keeps plain files
		rotate rotation
		within time.Duration
	}{
		{"atomic rename", nil, atomicRename, time.Second},
		{"C13a C13b in-place truncate and write", nil, inPlace, 2 * time.Second},
		{"C13c Kubernetes ..data symlink swap", k8sLayout, k8sSwap, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pki := newTestPKI(t)
			if tc.setup != nil {
				tc.setup(t, pki.dir, pki.server)
			}
			up := newRecordingUpstream(t)
			// A long periodic interval: the file events must do the work.
			rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, `reload_interval = "1h"`))
			loop := startScrapeLoop(t, rp.metrics, pki.ca.Pool(), pki.client.TLSCertificate())
			time.Sleep(100 * time.Millisecond)

			next := mustIssue(t, pki.ca, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
			start := time.Now()
			tc.rotate(t, pki.dir, next)
			waitForSerial(t, rp.metrics, pki, next.Cert.SerialNumber,
				tc.within+time.Since(start))
			time.Sleep(100 * time.Millisecond)
			loop.stop()

			if n := loop.failed.Load(); n != 0 {
				t.Errorf("%d of %d scrapes failed during the rotation; last: %v",
					n, n+loop.ok.Load(), loop.lastErr.Load())
			}
			if loop.ok.Load() == 0 {
				t.Error("no scrape succeeded")
			}
			rp.logs.waitForLog(t, "serving a new certificate")
			rp.logs.waitForLog(t, "serial="+next.Cert.SerialNumber.Text(16))
		})
	}
}

// TestReloadKeepsLastGoodMaterial covers C13d and broken files: the old
// keypair stays in service, the failure is logged, and a later good write
// is picked up.
func TestReloadKeepsLastGoodMaterial(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, `reload_interval = "1h"`))
	loop := startScrapeLoop(t, rp.metrics, pki.ca.Pool(), pki.client.TLSCertificate())
	first := pki.server.Cert.SerialNumber

	next := mustIssue(t, pki.ca, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
	breakages := []struct {
		name  string
		write func()
		log   string
	}{
		{"half-written certificate", func() {
			writeFile(t, pki.dir, "server.pem", next.CertPEM()[:200], 0o644)
		}, "no complete PEM block"},
		{"C13d new certificate whose key never arrives", func() {
			writeFile(t, pki.dir, "server.pem", next.CertPEM(), 0o644)
		}, "private key does not match public key"},
		{"empty CA file", func() {
			writeFile(t, pki.dir, "ca.pem", nil, 0o644)
		}, "ca_certs[0]"},
	}
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			b.write()
			rp.logs.waitForLog(t, b.log)
			if got := servedSerial(t, rp.metrics, pki); got.Cmp(first) != 0 {
				t.Fatalf("serving %x after a broken write, want the old %x", got, first)
			}
		})
	}
	if !strings.Contains(rp.logs.String(), "keeping the previous material") {
		t.Error("the failed reloads were not logged as such")
	}

	// Mend everything; the new pair goes into service.
	writeFile(t, pki.dir, "ca.pem", pki.ca.CertPEM(), 0o644)
	writeFile(t, pki.dir, "server-key.pem", next.KeyPEM(), 0o600)
	waitForSerial(t, rp.metrics, pki, next.Cert.SerialNumber, 2*time.Second)
	loop.stop()
	if n := loop.failed.Load(); n != 0 {
		t.Errorf("%d scrapes failed while broken files were around; last: %v",
			n, loop.lastErr.Load())
	}
}

// TestC12ReloadRotatesClientCA covers C12: after the CA bundle is replaced, a
// client of the new CA is accepted, a new handshake from the old CA's
// client is refused, and an old-CA connection kept alive across the
// reload is refused on its next request.
func TestC12ReloadRotatesClientCA(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, `reload_interval = "1h"`))

	caB, err := devpki.NewCA("CA B")
	if err != nil {
		t.Fatal(err)
	}
	clientB := mustIssue(t, caB, devpki.ClientTemplate("prometheus.test"))
	oldClient := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	if status, _, err := get(t, oldClient, "https://"+rp.metrics+"/metrics"); status != 200 {
		t.Fatalf("before the rotation: %d %v", status, err)
	}

	tmp := writeFile(t, pki.dir, ".ca.tmp", caB.CertPEM(), 0o644)
	if err := os.Rename(tmp, filepath.Join(pki.dir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	rp.logs.waitForLog(t, "certificates reloaded")

	newClient := tlsClient(pki.ca.Pool(), clientB.TLSCertificate())
	if status, _, err := get(t, newClient, "https://"+rp.metrics+"/metrics"); status != 200 {
		t.Errorf("CA B client after the rotation: %d %v", status, err)
	}
	fresh := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	if _, _, err := get(t, fresh, "https://"+rp.metrics+"/metrics"); err == nil {
		t.Error("a new handshake with the old CA's client succeeded")
	}

	resp, err := oldClient.Get("https://" + rp.metrics + "/metrics")
	if err != nil {
		t.Fatalf("the kept-alive connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("old CA's kept-alive connection got %d, want 403", resp.StatusCode)
	}
	rp.logs.waitForLog(t, "reason=peer_untrusted_after_reload")
}

// TestReloadOnSignal checks that Reload (what SIGHUP calls) swaps in new
// material at once, without waiting for file events.
func TestReloadOnSignal(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, `reload_interval = "1h"`))

	next := mustIssue(t, pki.ca, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
	atomicRename(t, pki.dir, next)
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, rp.metrics, pki); got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Errorf("serving %x right after Reload, want %x", got, next.Cert.SerialNumber)
	}
	rp.logs.waitForLog(t, "trigger=SIGHUP")
}

// TestReloadSaysConfigChangesNeedARestart checks that a SIGHUP after the
// configuration file changed says that the change is not applied.
func TestReloadSaysConfigChangesNeedARestart(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	cfg := baseConfig(pki, up.URL, "")
	rp := startProxy(t, pki.dir, cfg)

	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rp.logs.String(), "restart to apply") {
		t.Fatal("warned about a configuration file that did not change")
	}
	writeFile(t, pki.dir, "proxy.toml",
		[]byte(strings.Replace(cfg, "[upstream]", "[upstream]\ntimeout = \"3s\"", 1)), 0o644)
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	rp.logs.waitForLog(t, "restart to apply the configuration")
}
