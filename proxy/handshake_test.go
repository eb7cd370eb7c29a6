package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// TestClientCertificates drives real handshakes against the metrics
// listener with every kind of client certificate from cases C01 to C04,
// and checks both what the client sees and what the proxy logs.
func TestClientCertificates(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)

	other, err := devpki.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := pki.ca.NewIntermediate("intermediate A1")
	if err != nil {
		t.Fatal(err)
	}
	inter2, err := inter.NewIntermediate("intermediate A2")
	if err != nil {
		t.Fatal(err)
	}
	selfSigned, err := devpki.NewCA("prometheus.test")
	if err != nil {
		t.Fatal(err)
	}

	client := devpki.ClientTemplate("prometheus.test")
	withEKU := func(eku ...x509.ExtKeyUsage) devpki.Template {
		c := client
		c.ExtKeyUsage = eku
		return c
	}
	withTimes := func(nb, na time.Time) devpki.Template {
		c := client
		c.NotBefore, c.NotAfter = nb, na
		return c
	}
	now := time.Now()
	leafOnly := func(l *devpki.Leaf) tls.Certificate {
		c := l.TLSCertificate()
		c.Certificate = c.Certificate[:1]
		return c
	}

	tests := []struct {
		name   string
		certs  []tls.Certificate
		reason string // "" means the scrape succeeds
	}{
		{"C01a no certificate", nil, "no_client_cert"},
		{"C01b certificate from another CA",
			[]tls.Certificate{mustIssue(t, other, client).TLSCertificate()}, "unknown_authority"},
		{"C01c self-signed certificate",
			[]tls.Certificate{selfSigned.TLSCertificate()}, "self_signed"},
		{"C01d trusted certificate",
			[]tls.Certificate{pki.client.TLSCertificate()}, ""},
		{"C02a intermediate not sent",
			[]tls.Certificate{leafOnly(mustIssue(t, inter, client))}, "unknown_authority"},
		{"C02b intermediate sent",
			[]tls.Certificate{mustIssue(t, inter, client).TLSCertificate()}, ""},
		{"C02d chain of depth 3",
			[]tls.Certificate{mustIssue(t, inter2, client).TLSCertificate()}, ""},
		{"C03a serverAuth only",
			[]tls.Certificate{mustIssue(t, pki.ca,
				withEKU(x509.ExtKeyUsageServerAuth)).TLSCertificate()}, "bad_key_usage"},
		{"C03b no extended key usage",
			[]tls.Certificate{mustIssue(t, pki.ca, withEKU()).TLSCertificate()}, ""},
		{"C03c clientAuth and serverAuth",
			[]tls.Certificate{mustIssue(t, pki.ca, withEKU(x509.ExtKeyUsageClientAuth,
				x509.ExtKeyUsageServerAuth)).TLSCertificate()}, ""},
		{"C04a expired",
			[]tls.Certificate{mustIssue(t, pki.ca, withTimes(now.Add(-48*time.Hour),
				now.Add(-time.Hour))).TLSCertificate()}, "expired"},
		{"C04b not yet valid",
			[]tls.Certificate{mustIssue(t, pki.ca, withTimes(now.Add(time.Hour),
				now.Add(48*time.Hour))).TLSCertificate()}, "not_yet_valid"},
	}

	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			c := tlsClient(pki.ca.Pool(), tc.certs...)
			status, body, err := get(t, c, "https://"+rp.metrics+"/metrics")

			if tc.reason == "" {
				if err != nil || status != http.StatusOK || body != "upstream_up 1\n" {
					t.Fatalf("want 200 with the upstream body, got %d %q %v", status, body, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("handshake succeeded with status %d, want reason %s", status, tc.reason)
			}
			// What the client reports varies: in TLS 1.3 it may finish its
			// side and send the request before the server's alert arrives,
			// and then sees a broken connection, or a failed HTTP/2
			// preface. What matters is that it got no HTTP response, that
			// the proxy names the reason, and that the daemon heard nothing.
			rp.logs.waitForLog(t, "reason="+tc.reason)
			if n := len(up.requests()); n != before {
				t.Errorf("upstream saw %d requests from a refused client", n-before)
			}
		})
	}

	t.Run("C01b a Go client with a foreign certificate sends none", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pki.ca.Pool(),
			Certificates: []tls.Certificate{mustIssue(t, other, client).TLSCertificate()},
		}}
		defer tr.CloseIdleConnections()
		_, err := (&http.Client{Transport: tr}).Get("https://" + rp.metrics + "/metrics")
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("want a certificate-required alert, got %v", err)
		}
	})

	// Logs carry the subject, never a PEM body.
	if strings.Contains(rp.logs.String(), "BEGIN") {
		t.Error("the log holds PEM data")
	}
}

// TestServerKeypairSelection covers C08: several keypairs chosen by SNI,
// and a scrape by IP with no SNI.
func TestServerKeypairSelection(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)

	ecdsaOnly := mustIssue(t, pki.ca, devpki.ServerTemplate("sidecar.test"))
	rsaTmpl := devpki.ServerTemplate("metrics.sidecar.test", "127.0.0.1")
	rsaTmpl.KeyType = devpki.RSA2048
	rsaIP := mustIssue(t, pki.ca, rsaTmpl)
	writeFile(t, pki.dir, "k0.pem", ecdsaOnly.CertPEM(), 0o644)
	writeFile(t, pki.dir, "k0-key.pem", ecdsaOnly.KeyPEM(), 0o600)
	writeFile(t, pki.dir, "k1.pem", rsaIP.CertPEM(), 0o644)
	writeFile(t, pki.dir, "k1-key.pem", rsaIP.KeyPEM(), 0o600)

	cfg := strings.Replace(baseConfig(pki, up.URL, ""), `cert_file = "server.pem"
key_file = "server-key.pem"`, `cert_file = "k0.pem"
key_file = "k0-key.pem"

[[metrics_service.keypairs]]
cert_file = "k1.pem"
key_file = "k1-key.pem"`, 1)
	rp := startProxy(t, pki.dir, cfg)

	tests := []struct {
		name       string
		serverName string // SNI; empty sends none
		want       *x509.Certificate
	}{
		{"C08a no SNI: the keypair with the listener's IP", "", rsaIP.Cert},
		{"C08b SNI sidecar.test", "sidecar.test", ecdsaOnly.Cert},
		{"C08c SNI metrics.sidecar.test", "metrics.sidecar.test", rsaIP.Cert},
		{"unknown SNI: the first keypair", "other.test", ecdsaOnly.Cert},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", rp.metrics, &tls.Config{
				ServerName:         tc.serverName,
				InsecureSkipVerify: true, // the test inspects the certificate itself
				Certificates:       []tls.Certificate{pki.client.TLSCertificate()},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got := conn.ConnectionState().PeerCertificates[0]
			if !got.Equal(tc.want) {
				t.Errorf("served %v, want %v", got.Subject, tc.want.Subject)
			}
		})
	}
}

func TestTLSVersionsAndALPN(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	base := &tls.Config{
		RootCAs:      pki.ca.Pool(),
		ServerName:   "sidecar.test",
		Certificates: []tls.Certificate{pki.client.TLSCertificate()},
	}
	t.Run("C26c TLS 1.1 refused", func(t *testing.T) {
		c := base.Clone()
		c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if conn, err := tls.Dial("tcp", rp.metrics, c); err == nil {
			conn.Close()
			t.Fatal("TLS 1.1 handshake succeeded")
		}
		rp.logs.waitForLog(t, "reason=protocol_version")
	})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run("C26a "+tls.VersionName(v), func(t *testing.T) {
			c := base.Clone()
			c.MinVersion, c.MaxVersion = v, v
			c.NextProtos = []string{"h2", "http/1.1"}
			conn, err := tls.Dial("tcp", rp.metrics, c)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Errorf("ALPN chose %q, want h2", p)
			}
		})
	}
	t.Run("scrape over HTTP/2", func(t *testing.T) {
		c := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
		resp, err := c.Get("https://" + rp.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			t.Errorf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
	})
}
