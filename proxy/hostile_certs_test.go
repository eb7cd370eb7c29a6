package proxy

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// mustCA makes a root CA for a test.
func mustCA(t testing.TB, name string) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// signedBy issues a client leaf from parent, which need not be a CA: the
// certificate is what a forger would make, not what a CA would.
func signedBy(t testing.TB, parent *devpki.Leaf, tmpl devpki.Template,
	edit func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(parent.Cert.PublicKey.(*ecdsa.PublicKey).Curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	c := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: tmpl.CommonName},
		DNSNames:     tmpl.DNSNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if edit != nil {
		edit(c)
	}
	der, err := x509.CreateCertificate(rand.Reader, c, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der}
	for _, ic := range parent.Intermediates {
		chain = append(chain, ic.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}
}

// TestHostileClientCertificates extends TestClientCertificates (C01 to
// C04) with forgeries and oddities: each is refused at the handshake and
// the upstream hears nothing, or, where the chain is sound, scrapes.
func TestHostileClientCertificates(t *testing.T) {
	env := startHostile(t, "")
	pki := env.pki
	client := devpki.ClientTemplate("prometheus.test")

	// A CA of the trusted CA's very name, with a key of its own.
	namesake := mustCA(t, pki.ca.Cert.Subject.CommonName)
	inter, err := pki.ca.NewIntermediate("INT-A1")
	if err != nil {
		t.Fatal(err)
	}
	deep := inter
	for i := range 3 {
		if deep, err = deep.NewIntermediate("INT-A" + string(rune('2'+i))); err != nil {
			t.Fatal(err)
		}
	}
	foreign := mustCA(t, "CA-B")
	foreignInter, err := foreign.NewIntermediate("INT-B1")
	if err != nil {
		t.Fatal(err)
	}

	// A leaf whose intermediate expired.
	expiredInter := signedBy(t, &pki.ca.Leaf, devpki.Template{CommonName: "INT-old"},
		func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage = x509.KeyUsageCertSign
			c.ExtKeyUsage = nil
			c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
		})
	oldInterCert, _ := x509.ParseCertificate(expiredInter.Certificate[0])
	oldInter := &devpki.Leaf{Cert: oldInterCert, Key: expiredInter.PrivateKey.(*ecdsa.PrivateKey)}
	underOld := signedBy(t, oldInter, client, nil)
	underOld.Certificate = append(underOld.Certificate, oldInterCert.Raw)

	// A leaf with a tampered signature.
	tampered := pki.client.TLSCertificate()
	raw := append([]byte(nil), tampered.Certificate[0]...)
	raw[len(raw)-3] ^= 0xff
	tampered.Certificate = [][]byte{raw}

	// A leaf carrying a critical extension nobody understands.
	critical := signedBy(t, &pki.ca.Leaf, client, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1,
			99999, 1}, Critical: true, Value: []byte{5, 0}}}
	})

	// Chains padded with copies of their intermediate: about 90 KiB, still
	// a sound chain, and about 450 KiB, past what crypto/tls takes in one
	// Certificate message (256 KiB).
	padded := func(copies int) tls.Certificate {
		c := mustIssue(t, inter, client).TLSCertificate()
		for range copies {
			c.Certificate = append(c.Certificate, inter.Cert.Raw)
		}
		return c
	}

	// A foreign leaf that sends the trusted root along, as if to borrow it.
	borrowing := mustIssue(t, foreignInter, client).TLSCertificate()
	borrowing.Certificate = append(borrowing.Certificate, pki.ca.Cert.Raw)

	tests := []struct {
		name string
		cert tls.Certificate
		ok   bool
	}{
		{"CA named like the trusted one", mustIssue(t, namesake, client).TLSCertificate(), false},
		{"signed by a trusted leaf, not a CA", signedBy(t, pki.client, client, nil), false},
		{"signed by the server's leaf", signedBy(t, pki.server, client, nil), false},
		{"intermediate expired", underOld, false},
		{"tampered signature", tampered, false},
		{"unknown critical extension", critical, false},
		{"chain padded past 256 KiB", padded(1000), false},
		{"foreign chain sending the trusted root", borrowing, false},
		{"server certificate as client certificate", pki.server.TLSCertificate(), false},
		{"C02 chain of depth 4", mustIssue(t, deep, client).TLSCertificate(), true},
		{"sound chain padded to 90 KiB", padded(200), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.up.requests())
			c := tlsClient(pki.ca.Pool(), tc.cert)
			defer c.CloseIdleConnections()
			status, _, err := get(t, c, "https://"+env.rp.metrics+"/metrics")
			if tc.ok {
				if err != nil || status != http.StatusOK {
					t.Fatalf("want 200, got %d %v", status, err)
				}
				onlyMetricsSince(t, env.up, before, 1)
				return
			}
			if err == nil {
				t.Fatalf("BYPASS: the handshake succeeded with status %d", status)
			}
			noneSince(t, env.up, before, tc.name)
		})
	}
	checkScrapes(t, env.rp.metrics, pki)
	t.Logf("figures: %d client certificate forgeries and oddities", len(tests))
}

// TestHostileCAFiles covers C02c and C05 with several CA files: a file
// holding the root and an intermediate lets a client send its leaf alone;
// two files, one of them DER, are both trusted.
func TestHostileCAFiles(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	inter, err := pki.ca.NewIntermediate("INT-A1")
	if err != nil {
		t.Fatal(err)
	}
	second := mustCA(t, "second root")
	third := mustCA(t, "third root")
	writeFile(t, pki.dir, "root-and-int.pem", append(pki.ca.CertPEM(), inter.CertPEM()...),
		0o644)
	writeFile(t, pki.dir, "second.pem", second.CertPEM(), 0o644)
	writeFile(t, pki.dir, "third.der", third.Cert.Raw, 0o644)
	cfg := strings.Replace(baseConfig(pki, up.URL, ""), `ca_certs = ["ca.pem"]`,
		`ca_certs = ["root-and-int.pem", "second.pem", "third.der"]`, 1)
	rp := startProxy(t, pki.dir, cfg)

	leafOnly := mustIssue(t, inter, devpki.ClientTemplate("prometheus.test")).TLSCertificate()
	leafOnly.Certificate = leafOnly.Certificate[:1]
	tests := []struct {
		name string
		cert tls.Certificate
	}{
		{"C02c leaf only, intermediate in the CA file", leafOnly},
		{"C05 client of the second file's root",
			mustIssue(t, second, devpki.ClientTemplate("p")).TLSCertificate()},
		{"C05 client of the DER file's root",
			mustIssue(t, third, devpki.ClientTemplate("p")).TLSCertificate()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, err := get(t, tlsClient(pki.ca.Pool(), tc.cert),
				"https://"+rp.metrics+"/metrics")
			if err != nil || status != http.StatusOK {
				t.Errorf("got %d %v, want 200", status, err)
			}
		})
	}
	rp.logs.waitForLog(t, "cas=4")
}

// TestHostileServerKeyFiles starts the proxy with its key in each form
// operators meet and scrapes through it (PKCS #1, PKCS #8, SEC 1, SEC 1 as
// "openssl ecparam -genkey" writes it, with an EC PARAMETERS block first),
// and with the certificate's chain holding an intermediate. Encrypted keys,
// in legacy PEM or PKCS #8 form, are refused with a clear problem that
// names the file.
func TestHostileServerKeyFiles(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rsaTmpl := devpki.ServerTemplate("sidecar.test", "127.0.0.1")
	rsaTmpl.KeyType = devpki.RSA2048
	rsaLeaf := mustIssue(t, pki.ca, rsaTmpl)
	ecKey := pki.server.Key.(*ecdsa.PrivateKey)
	sec1DER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	p256 := asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	params, _ := asn1.Marshal(p256)
	ecparam := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}),
		sec1...)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(rsaLeaf.Key.(*rsa.PrivateKey))})
	inter, err := pki.ca.NewIntermediate("server INT")
	if err != nil {
		t.Fatal(err)
	}
	chained := mustIssue(t, inter, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))

	tests := []struct {
		name string
		leaf *devpki.Leaf
		key  []byte
	}{
		{"PKCS #8 EC", pki.server, pki.server.KeyPEM()},
		{"PKCS #8 RSA", rsaLeaf, rsaLeaf.KeyPEM()},
		{"PKCS #1 RSA", rsaLeaf, pkcs1},
		{"SEC 1 EC", pki.server, sec1},
		{"SEC 1 after EC PARAMETERS, as openssl ecparam -genkey writes it", pki.server, ecparam},
		{"certificate with its intermediate", chained, chained.KeyPEM()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "ca.pem", pki.ca.CertPEM(), 0o644)
			writeFile(t, dir, "server.pem", tc.leaf.CertPEM(), 0o644)
			writeFile(t, dir, "server-key.pem", tc.key, 0o600)
			rp := startProxy(t, dir, baseConfig(pki, up.URL, ""))
			c := tlsClient(pki.ca.Pool(), pki.client.TLSCertificate())
			defer c.CloseIdleConnections()
			status, _, err := get(t, c, "https://"+rp.metrics+"/metrics")
			if err != nil || status != http.StatusOK {
				t.Errorf("scrape: %d %v, want 200", status, err)
			}
		})
	}

	t.Run("encrypted", func(t *testing.T) {
		encrypted := encryptedKeys(t, pki, sec1DER)
		for name, key := range encrypted {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				writeFile(t, dir, "ca.pem", pki.ca.CertPEM(), 0o644)
				writeFile(t, dir, "server.pem", pki.server.CertPEM(), 0o644)
				writeFile(t, dir, "server-key.pem", key, 0o600)
				err := buildProxy(t, dir, baseConfig(pki, up.URL, ""))
				var probs *Problems
				if !errors.As(err, &probs) {
					t.Fatalf("want a start-up problem, got %v", err)
				}
				msg := err.Error()
				if !strings.Contains(msg, "server-key.pem: the private key is encrypted") ||
					!strings.Contains(msg, "keypairs[0]") {
					t.Errorf("problem %q does not say the key file is encrypted", msg)
				}
			})
		}
	})
}

// encryptedKeys returns the server's key encrypted as operators' tools
// write it: legacy PEM encryption, and PKCS #8 by openssl when it is
// installed.
func encryptedKeys(t testing.TB, pki *testPKI, sec1DER []byte) map[string][]byte {
	t.Helper()
	//lint:ignore SA1019 legacy PEM encryption is what the proxy must recognise and refuse
	block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", sec1DER, []byte("pw"),
		x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{"legacy PEM": pem.EncodeToMemory(block)}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl is not installed: PKCS #8 encryption untested")
		return out
	}
	dir := t.TempDir()
	plain := writeFile(t, dir, "plain.pem", pki.server.KeyPEM(), 0o600)
	enc := filepath.Join(dir, "enc.pem")
	cmd := exec.Command(openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:pw",
		"-in", plain, "-out", enc)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs8: %v\n%s", err, b)
	}
	data, err := os.ReadFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	out["PKCS #8"] = data
	return out
}

// buildProxy loads cfgText as dir/proxy.toml and builds a Proxy from it,
// without serving; it returns New's error.
func buildProxy(t testing.TB, dir, cfgText string) error {
	t.Helper()
	path := writeFile(t, dir, "proxy.toml", []byte(cfgText), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	_, err = New(cfg, hclog.NewNullLogger())
	return err
}

// TestC08dRSAOnlyClient covers C08d: a TLS 1.2 client offering only
// RSA suites asks by SNI for the name of the ECDSA keypair. The proxy
// either serves a certificate the client can use or refuses the handshake
// with a logged reason; it does not panic, and serves other clients on.
func TestC08dRSAOnlyClient(t *testing.T) {
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rsaTmpl := devpki.ServerTemplate("metrics.sidecar.test", "127.0.0.1")
	rsaTmpl.KeyType = devpki.RSA2048
	rsaLeaf := mustIssue(t, pki.ca, rsaTmpl)
	writeFile(t, pki.dir, "rsa.pem", rsaLeaf.CertPEM(), 0o644)
	writeFile(t, pki.dir, "rsa-key.pem", rsaLeaf.KeyPEM(), 0o600)
	cfg := strings.Replace(baseConfig(pki, up.URL, ""), `key_file = "server-key.pem"`,
		`key_file = "server-key.pem"

[[metrics_service.keypairs]]
cert_file = "rsa.pem"
key_file = "rsa-key.pem"`, 1)
	rp := startProxy(t, pki.dir, cfg)

	c := pki.clientTLS("http/1.1")
	c.MaxVersion = tls.VersionTLS12
	c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	tr := &http.Transport{TLSClientConfig: c}
	defer tr.CloseIdleConnections()
	status, _, err := get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second},
		"https://"+rp.metrics+"/metrics")
	switch {
	case err == nil && status == http.StatusOK:
		t.Log("the proxy chose a certificate the RSA-only client could use")
	case err != nil:
		rp.logs.waitForLog(t, "reason=no_shared_params")
		t.Logf("refused cleanly: %v", err)
	default:
		t.Errorf("status %d, want 200 or a refused handshake", status)
	}
	checkScrapes(t, rp.metrics, pki)
}
