package proxy

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// TestIdentityRules checks that a trusted client whose identity no rule
// allows gets 403, distinct from an untrusted client's failed handshake,
// and that the log names what the certificate carried.
func TestIdentityRules(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, `
client_allowed_sans = ["spiffe://cluster.local/ns/*/sa/prometheus", "*.monitoring.example"]
client_allowed_common_names = ["vmagent"]
client_allowed_organizational_units = ["metrics-readers"]
`))

	spiffe := func(s string) []*url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{u}
	}
	client := devpki.ClientTemplate("x")
	tests := []struct {
		name   string
		tmpl   func(devpki.Template) devpki.Template
		status int
	}{
		{"SPIFFE ID with wildcard segment", func(c devpki.Template) devpki.Template {
			c.DNSNames, c.URIs = nil, spiffe("spiffe://cluster.local/ns/monitoring/sa/prometheus")
			return c
		}, 200},
		{"SPIFFE ID of another service account", func(c devpki.Template) devpki.Template {
			c.DNSNames, c.URIs = nil, spiffe("spiffe://cluster.local/ns/monitoring/sa/grafana")
			return c
		}, 403},
		{"DNS wildcard", func(c devpki.Template) devpki.Template {
			c.DNSNames = []string{"prom-0.monitoring.example"}
			return c
		}, 200},
		{"DNS two labels under the wildcard", func(c devpki.Template) devpki.Template {
			c.DNSNames = []string{"a.b.monitoring.example"}
			return c
		}, 403},
		{"common name", func(c devpki.Template) devpki.Template {
			c.CommonName, c.DNSNames = "vmagent", nil
			return c
		}, 200},
		{"organizational unit", func(c devpki.Template) devpki.Template {
			c.DNSNames, c.OrganizationalUnits = nil, []string{"metrics-readers"}
			return c
		}, 200},
		{"nothing matches", func(c devpki.Template) devpki.Template {
			c.CommonName, c.DNSNames = "billing", []string{"billing.example"}
			return c
		}, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			leaf := mustIssue(t, pki.ca, tc.tmpl(client))
			status, body, err := get(t, tlsClient(pki.ca.Pool(), leaf.TLSCertificate()),
				"https://"+rp.metrics+"/metrics")
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			seen := len(up.requests()) - before
			if tc.status == 403 {
				if seen != 0 || !strings.Contains(body, "not allowed") {
					t.Errorf("upstream saw %d requests; body %q", seen, body)
				}
			} else if seen != 1 {
				t.Errorf("upstream saw %d requests, want 1", seen)
			}
		})
	}

	rp.logs.waitForLog(t, "reason=identity")
	rp.logs.waitForLog(t, "peer_sans=billing.example")
	if strings.Contains(rp.logs.String(), "metrics-readers\"]") ||
		strings.Contains(rp.logs.String(), "*.monitoring.example") &&
			!strings.Contains(rp.logs.String(), "a.b.monitoring.example") {
		t.Error("the log reveals the allow-list")
	}
}

func TestNoIdentityRulesIsSaidAtStart(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))
	rp.logs.waitForLog(t, "any certificate the CAs signed may scrape")
}

// writeCRL writes a CRL signed by ca that revokes serials.
func writeCRL(t testing.TB, dir string, ca *devpki.CA, number int64, serials ...*big.Int) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s,
			RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                time.Now().Add(-time.Hour),
		NextUpdate:                time.Now().Add(time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	tmp := writeFile(t, dir, ".crl.tmp",
		pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
	if err := os.Rename(tmp, filepath.Join(dir, "crl.pem")); err != nil {
		t.Fatal(err)
	}
}

// TestC06Revocation checks crl_files (C06): a revoked client fails the handshake
// with the reason logged, others pass, and a revocation added by a reload
// reaches a connection opened before it.
func TestC06Revocation(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	revoked := mustIssue(t, pki.ca, devpki.ClientTemplate("revoked.test"))
	writeCRL(t, pki.dir, pki.ca, 1, revoked.Cert.SerialNumber)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL,
		`crl_files = ["crl.pem"]`+"\n"+`reload_interval = "1h"`))

	if _, _, err := get(t, tlsClient(pki.ca.Pool(), revoked.TLSCertificate()),
		"https://"+rp.metrics+"/metrics"); err == nil {
		t.Fatal("a revoked client completed the handshake")
	}
	rp.logs.waitForLog(t, "reason=revoked")

	good := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
	if status, _, err := get(t, good, "https://"+rp.metrics+"/metrics"); status != 200 {
		t.Fatalf("unrevoked client: %d %v", status, err)
	}

	// Revoke the good client too; its open connection must not outlive it.
	writeCRL(t, pki.dir, pki.ca, 2, revoked.Cert.SerialNumber, pki.client.Cert.SerialNumber)
	rp.logs.waitForLog(t, "certificates reloaded")
	status, _, err := get(t, good, "https://"+rp.metrics+"/metrics")
	if err != nil || status != http.StatusForbidden {
		t.Errorf("revoked client on its old connection: %d %v, want 403", status, err)
	}
	rp.logs.waitForLog(t, "was revoked at")
}

// TestCertificateExpiresDuringConnection covers C04c: a request on a
// keep-alive connection whose client certificate has expired since the
// handshake gets 403 and the connection is closed.
func TestCertificateExpiresDuringConnection(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	tmpl := devpki.ClientTemplate("short-lived.test")
	tmpl.NotBefore = time.Now().Add(-time.Minute)
	tmpl.NotAfter = time.Now().Add(2 * time.Second)
	short := mustIssue(t, pki.ca, tmpl)
	c := tlsClient(pki.ca.Pool(), short.TLSCertificate())
	if status, _, err := get(t, c, "https://"+rp.metrics+"/metrics"); status != 200 {
		t.Fatalf("while valid: %d %v", status, err)
	}

	time.Sleep(time.Until(tmpl.NotAfter.Truncate(time.Second).Add(1100 * time.Millisecond)))
	resp, err := c.Get("https://" + rp.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("after expiry: %d, want 403", resp.StatusCode)
	}
	rp.logs.waitForLog(t, "reason=peer_cert_expired")
}

// TestSessionResumption checks that a resumed TLS session scrapes as a
// full handshake does: what the proxy knows of the client survives
// resumption.
func TestSessionResumption(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	cache := tls.NewLRUClientSessionCache(4)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := &tls.Config{RootCAs: pki.ca.Pool(), ServerName: "sidecar.test",
			Certificates:       []tls.Certificate{pki.client.TLSCertificate()},
			ClientSessionCache: cache, MinVersion: v, MaxVersion: v}
		var resumed bool
		for range 3 {
			tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
			resp, err := (&http.Client{Transport: tr}).Get("https://" + rp.metrics + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d (resumed %v)", tls.VersionName(v), resp.StatusCode,
					resp.TLS.DidResume)
			}
			resumed = resumed || resp.TLS.DidResume
		}
		if !resumed {
			t.Errorf("%s: no connection resumed its session", tls.VersionName(v))
		}
	}
}
