package proxy

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// TestBadCertificateFiles checks that each kind of broken file is reported
// at start-up with its file and what is wrong, before anything listens.
func TestBadCertificateFiles(t *testing.T) {
	pki := newTestPKI(t)
	other := mustIssue(t, pki.ca, devpki.ServerTemplate("other.test"))
	expiredTmpl := devpki.ServerTemplate("sidecar.test")
	expiredTmpl.NotBefore = time.Now().Add(-72 * time.Hour)
	expiredTmpl.NotAfter = time.Now().Add(-time.Hour)
	expired := mustIssue(t, pki.ca, expiredTmpl)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})

	files := map[string][]byte{
		"empty.pem":       nil,
		"garbage.pem":     []byte("this is not a certificate\n"),
		"other-key.pem":   other.KeyPEM(),
		"encrypted.pem":   encrypted,
		"expired.pem":     expired.CertPEM(),
		"expired-key.pem": expired.KeyPEM(),
		"truncated.pem":   pki.server.CertPEM()[:100],
	}
	for name, data := range files {
		writeFile(t, pki.dir, name, data, 0o600)
	}

	tests := []struct {
		name       string
		cert, key  string
		ca         string
		key_, want string
	}{
		{"missing certificate", "nope.pem", "server-key.pem", "ca.pem",
			"keypairs[0]", "nope.pem: no such file"},
		{"empty certificate", "empty.pem", "server-key.pem", "ca.pem",
			"keypairs[0]", "empty.pem: certificate file is empty"},
		{"not PEM", "garbage.pem", "server-key.pem", "ca.pem",
			"keypairs[0]", "garbage.pem: not PEM"},
		{"truncated PEM", "truncated.pem", "server-key.pem", "ca.pem",
			"keypairs[0]", "truncated.pem: no complete PEM block"},
		{"key does not match", "server.pem", "other-key.pem", "ca.pem",
			"keypairs[0]", "private key does not match public key"},
		{"encrypted key", "server.pem", "encrypted.pem", "ca.pem",
			"keypairs[0]", "encrypted.pem: the private key is encrypted"},
		{"swapped files", "server-key.pem", "server.pem", "ca.pem",
			"keypairs[0]", "server-key.pem: holds a private key, not a certificate"},
		{"expired server certificate", "expired.pem", "expired-key.pem", "ca.pem",
			"keypairs[0]", "expired.pem: certificate \"CN=sidecar.test\" expired"},
		{"missing CA file", "server.pem", "server-key.pem", "nope-ca.pem",
			"ca_certs[0]", "nope-ca.pem: no such file"},
		{"CA file with no certificate", "server.pem", "server-key.pem", "garbage.pem",
			"ca_certs[0]", "garbage.pem: neither PEM nor a DER certificate"},
		{"CA file holding a key", "server.pem", "server-key.pem", "other-key.pem",
			"ca_certs[0]", "other-key.pem: PEM block 1 is \"PRIVATE KEY\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.NewReplacer(`"server.pem"`, `"`+tc.cert+`"`,
				`"server-key.pem"`, `"`+tc.key+`"`, `"ca.pem"`, `"`+tc.ca+`"`).
				Replace(baseConfig(pki, "http://127.0.0.1:1", ""))
			path := writeFile(t, pki.dir, "proxy.toml", []byte(cfg), 0o644)
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(c, hclog.NewNullLogger())
			var probs *Problems
			if !errors.As(err, &probs) || len(probs.List) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.key_) || !strings.Contains(msg, tc.want) {
				t.Errorf("got %q, want it to name %q and say %q", msg, tc.key_, tc.want)
			}
			if strings.Contains(msg, "-----BEGIN C") || strings.Contains(msg, "KEY-----") ||
				strings.Contains(msg, "MII") {
				t.Errorf("the message echoes file content: %q", msg)
			}
			if !strings.HasPrefix(msg, filepath.Join(pki.dir, "proxy.toml")+":") {
				t.Errorf("the message does not start with the config file: %q", msg)
			}
		})
	}
}

// TestCABundleTrustsEveryCertificate checks that each root in a bundle is
// trusted, not only the first.
func TestCABundleTrustsEveryCertificate(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	second, err := devpki.NewCA("second CA")
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(pki.ca.CertPEM(), []byte("# a comment between blocks\n")...)
	writeFile(t, pki.dir, "ca.pem", append(bundle, second.CertPEM()...), 0o644)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, ""))

	for _, ca := range []*devpki.CA{pki.ca, second} {
		cli := mustIssue(t, ca, devpki.ClientTemplate("prometheus.test"))
		status, _, err := get(t, tlsClient(pki.ca.Pool(), cli.TLSCertificate()),
			"https://"+rp.metrics+"/metrics")
		if err != nil || status != http.StatusOK {
			t.Errorf("client of %s: got %d %v", ca.Cert.Subject, status, err)
		}
	}
	rp.logs.waitForLog(t, "cas=2")
}

// TestKeypairWarnings covers C03d and C07: keypairs that load but that
// clients will reject are named at start-up.
func TestKeypairWarnings(t *testing.T) {
	pki := newTestPKI(t)
	cnOnly := devpki.Template{CommonName: "sidecar.test",
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	clientOnly := devpki.ServerTemplate("sidecar.test")
	clientOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}

	tests := []struct {
		name string
		tmpl devpki.Template
		want string
	}{
		{"C07 common name only", cnOnly, "no DNS or IP SubjectAltName"},
		{"C03d clientAuth only", clientOnly, "lacks the serverAuth extended key usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := mustIssue(t, pki.ca, tc.tmpl)
			writeFile(t, pki.dir, "server.pem", leaf.CertPEM(), 0o644)
			writeFile(t, pki.dir, "server-key.pem", leaf.KeyPEM(), 0o600)
			path := writeFile(t, pki.dir, "proxy.toml",
				[]byte(baseConfig(pki, "http://127.0.0.1:1", "")), 0o644)
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(cfg, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			w := strings.Join(p.Warnings(), "\n")
			if !strings.Contains(w, tc.want) || !strings.Contains(w, "keypairs[0]") {
				t.Errorf("warnings %q lack %q", w, tc.want)
			}
		})
	}

	t.Run("C07 a Go client rejects the common-name-only certificate", func(t *testing.T) {
		leaf := mustIssue(t, pki.ca, cnOnly)
		conn, err := tls.Dial("tcp", startTLSWith(t, leaf.TLSCertificate()), &tls.Config{
			RootCAs: pki.ca.Pool(), ServerName: "sidecar.test"})
		if err == nil {
			conn.Close()
			t.Fatal("handshake succeeded")
		}
		if !strings.Contains(err.Error(), "legacy Common Name") &&
			!strings.Contains(err.Error(), "not valid for any names") {
			t.Errorf("client error %q does not name the missing SAN", err)
		}
	})
}

// startTLSWith serves cert on a bare TLS listener, no client auth, and
// returns its address; enough to see what a client thinks of the cert.
func startTLSWith(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return l.Addr().String()
}

// TestKeyFormats checks that the private key encodings operators meet all
// load: PKCS #8, PKCS #1 (RSA) and SEC 1 (EC).
func TestKeyFormats(t *testing.T) {
	pki := newTestPKI(t)
	rsaTmpl := devpki.ServerTemplate("sidecar.test")
	rsaTmpl.KeyType = devpki.RSA2048
	rsaLeaf := mustIssue(t, pki.ca, rsaTmpl)

	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(rsaLeaf.Key.(*rsa.PrivateKey))})
	sec1DER, err := x509.MarshalECPrivateKey(pki.server.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})

	tests := []struct {
		name string
		leaf *devpki.Leaf
		key  []byte
	}{
		{"PKCS #8", pki.server, pki.server.KeyPEM()},
		{"PKCS #1", rsaLeaf, pkcs1},
		{"SEC 1", pki.server, sec1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kp := Keypair{
				CertFile: writeFile(t, t.TempDir(), "c.pem", tc.leaf.CertPEM(), 0o644),
				KeyFile:  writeFile(t, t.TempDir(), "k.pem", tc.key, 0o600),
			}
			cert, _, err := loadKeypair(kp, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !cert.Leaf.Equal(tc.leaf.Cert) {
				t.Error("loaded a different certificate")
			}
		})
	}
}

// TestKeyFileModes covers C11: a world-readable key is a warning, a
// world-writable one an error, a certificate's mode does not matter.
func TestKeyFileModes(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name     string
		keyMode  os.FileMode
		certMode os.FileMode
		warn     bool
		fail     bool
	}{
		{"C11a key 0644 warns", 0o644, 0o644, true, false},
		{"C11b key 0600 is quiet", 0o600, 0o644, false, false},
		{"C11c certificate 0644 is quiet", 0o400, 0o644, false, false},
		{"C11d key 0666 is refused", 0o666, 0o644, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			kp := Keypair{
				CertFile: writeFile(t, dir, "c.pem", pki.server.CertPEM(), 0o644),
				KeyFile:  writeFile(t, dir, "k.pem", pki.server.KeyPEM(), 0o600),
			}
			// Set modes explicitly: the umask may have narrowed them.
			if err := os.Chmod(kp.KeyFile, tc.keyMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(kp.CertFile, tc.certMode); err != nil {
				t.Fatal(err)
			}

			_, warns, err := loadKeypair(kp, time.Now())
			if tc.fail {
				if err == nil || !strings.Contains(err.Error(), "writable by every user") ||
					!strings.Contains(err.Error(), "k.pem") {
					t.Fatalf("want a refusal naming k.pem, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(strings.Join(warns, "\n"), "readable by every user")
			if got != tc.warn {
				t.Errorf("warned %v, want %v: %q", got, tc.warn, warns)
			}
		})
	}
}

// TestExpiryWarnings checks the start-up warnings for a server
// certificate and a CA inside the warning window, and for a CRL past its
// next update.
func TestExpiryWarnings(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	tmpl := devpki.ServerTemplate("sidecar.test", "127.0.0.1")
	tmpl.NotAfter = time.Now().Add(3 * 24 * time.Hour)
	soon := mustIssue(t, pki.ca, tmpl)
	writeFile(t, pki.dir, "server.pem", soon.CertPEM(), 0o644)
	writeFile(t, pki.dir, "server-key.pem", soon.KeyPEM(), 0o600)

	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: time.Now().Add(-48 * time.Hour),
		NextUpdate: time.Now().Add(-24 * time.Hour),
	}, pki.ca.Cert, pki.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pki.dir, "crl.der", der, 0o644)

	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, `crl_files = ["crl.der"]`))
	rp.logs.waitForLog(t, "certificate expires soon: kind=server")
	rp.logs.waitForLog(t, "CRL is past its next update")
	if strings.Contains(rp.logs.String(), "kind=client_ca") {
		t.Error("warned about a CA a year from expiry")
	}

	// A window wider than the CA's year warns about the CA too.
	pki2 := newTestPKI(t)
	rp2 := startProxy(t, pki2.dir, baseConfig(pki2, up.URL, `expiry_warning = "9000h"`))
	rp2.logs.waitForLog(t, "certificate expires soon: kind=client_ca")
}
