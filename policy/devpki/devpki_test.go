package devpki_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

func mustCA(t testing.TB, name string) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(name)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", name, err)
	}
	return ca
}

func mustIntermediate(t testing.TB, parent *devpki.CA, name string) *devpki.CA {
	t.Helper()
	ca, err := parent.NewIntermediate(name)
	if err != nil {
		t.Fatalf("NewIntermediate(%q): %v", name, err)
	}
	return ca
}

func mustIssue(t testing.TB, ca *devpki.CA, tmpl devpki.Template) *devpki.Leaf {
	t.Helper()
	leaf, err := ca.Issue(tmpl)
	if err != nil {
		t.Fatalf("Issue(%q): %v", tmpl.CommonName, err)
	}
	return leaf
}

// verify checks leaf against root with the intermediates it carries.
func verify(t testing.TB, leaf *devpki.Leaf, root *devpki.CA, opts x509.VerifyOptions) error {
	t.Helper()
	opts.Roots = root.Pool()
	opts.Intermediates = x509.NewCertPool()
	for _, c := range leaf.Intermediates {
		opts.Intermediates.AddCert(c)
	}
	_, err := leaf.Cert.Verify(opts)
	return err
}

func TestCA(t *testing.T) {
	root := mustCA(t, "root")
	c := root.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("root is not marked as a CA")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("root cannot sign certificates")
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if len(root.Intermediates) != 0 {
		t.Errorf("root carries %d intermediates", len(root.Intermediates))
	}
	if c.Subject.CommonName != "root" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if other := mustCA(t, "root"); other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs share a serial number")
	}
}

func TestChainsVerify(t *testing.T) {
	root := mustCA(t, "root")
	int1 := mustIntermediate(t, root, "int1")
	int2 := mustIntermediate(t, int1, "int2")
	int3 := mustIntermediate(t, int2, "int3")

	tests := []struct {
		name      string
		issuer    *devpki.CA
		tmpl      devpki.Template
		usage     x509.ExtKeyUsage
		dnsName   string
		wantChain int // certificates the leaf carries above itself
	}{
		{name: "client from root", issuer: root, tmpl: devpki.ClientTemplate("c"),
			usage: x509.ExtKeyUsageClientAuth},
		{name: "server from root", issuer: root,
			tmpl:  devpki.ServerTemplate("sidecar.test", "127.0.0.1"),
			usage: x509.ExtKeyUsageServerAuth, dnsName: "sidecar.test"},
		{name: "server by IP", issuer: root, tmpl: devpki.ServerTemplate("127.0.0.1"),
			usage: x509.ExtKeyUsageServerAuth, dnsName: "127.0.0.1"},
		{name: "client via one intermediate", issuer: int1, tmpl: devpki.ClientTemplate("c"),
			usage: x509.ExtKeyUsageClientAuth, wantChain: 1},
		{name: "client via two intermediates", issuer: int2, tmpl: devpki.ClientTemplate("c"),
			usage: x509.ExtKeyUsageClientAuth, wantChain: 2},
		{name: "server via three intermediates", issuer: int3,
			tmpl:  devpki.ServerTemplate("sidecar.test"),
			usage: x509.ExtKeyUsageServerAuth, dnsName: "sidecar.test", wantChain: 3},
		{name: "RSA client", issuer: int1,
			tmpl: func() devpki.Template {
				tm := devpki.ClientTemplate("rsa")
				tm.KeyType = devpki.RSA2048
				return tm
			}(), usage: x509.ExtKeyUsageClientAuth, wantChain: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := mustIssue(t, tc.issuer, tc.tmpl)
			if len(leaf.Intermediates) != tc.wantChain {
				t.Fatalf("leaf carries %d intermediates, want %d",
					len(leaf.Intermediates), tc.wantChain)
			}
			if leaf.Cert.IsCA {
				t.Error("leaf is a CA")
			}
			err := verify(t, leaf, root, x509.VerifyOptions{
				DNSName:   tc.dnsName,
				KeyUsages: []x509.ExtKeyUsage{tc.usage},
			})
			if err != nil {
				t.Fatalf("chain does not verify: %v", err)
			}

			// The carried chain is ordered leaf-upwards: each signs the one before.
			prev := leaf.Cert
			for i, c := range leaf.Intermediates {
				if err := prev.CheckSignatureFrom(c); err != nil {
					t.Errorf("intermediate %d did not sign the certificate below it: %v", i, err)
				}
				prev = c
			}
			if err := prev.CheckSignatureFrom(root.Cert); err != nil {
				t.Errorf("the top of the carried chain is not signed by the root: %v", err)
			}
		})
	}
}

func TestIssueRespectsTemplate(t *testing.T) {
	root := mustCA(t, "root")
	other := mustCA(t, "other")
	now := time.Now()

	tests := []struct {
		name  string
		tmpl  devpki.Template
		roots *devpki.CA
		check func(*x509.Certificate, error) error
	}{
		{name: "expired", tmpl: devpki.Template{CommonName: "old",
			NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)},
			check: wantInvalid(x509.Expired)},
		{name: "not yet valid", tmpl: devpki.Template{CommonName: "early",
			NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)},
			check: wantInvalid(x509.Expired)},
		{name: "server-only EKU used as client", tmpl: devpki.ServerTemplate("s"),
			check: wantInvalid(x509.IncompatibleUsage)},
		{name: "other CA", tmpl: devpki.ClientTemplate("c"), roots: other,
			check: func(_ *x509.Certificate, err error) error {
				var u x509.UnknownAuthorityError
				if !errors.As(err, &u) {
					return errors.New("want UnknownAuthorityError")
				}
				return nil
			}},
		{name: "default validity", tmpl: devpki.ClientTemplate("c"),
			check: func(c *x509.Certificate, err error) error {
				if err != nil {
					return err
				}
				if d := c.NotAfter.Sub(c.NotBefore); d != devpki.DefaultValidity {
					return errors.New("validity is not DefaultValidity: " + d.String())
				}
				if !c.NotBefore.Before(time.Now()) {
					return errors.New("not valid yet")
				}
				return nil
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := mustIssue(t, root, tc.tmpl)
			roots := tc.roots
			if roots == nil {
				roots = root
			}
			err := verify(t, leaf, roots, x509.VerifyOptions{
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
			if cerr := tc.check(leaf.Cert, err); cerr != nil {
				t.Errorf("%v (verify error: %v)", cerr, err)
			}
		})
	}
}

func wantInvalid(r x509.InvalidReason) func(*x509.Certificate, error) error {
	return func(_ *x509.Certificate, err error) error {
		var inv x509.CertificateInvalidError
		if !errors.As(err, &inv) || inv.Reason != r {
			return errors.New("want CertificateInvalidError with the given reason")
		}
		return nil
	}
}

func TestTemplates(t *testing.T) {
	s := devpki.ServerTemplate("sidecar.test", "127.0.0.1", "::1", "other.test")
	if s.CommonName != "sidecar.test" {
		t.Errorf("server CN = %q", s.CommonName)
	}
	if len(s.DNSNames) != 2 || len(s.IPAddresses) != 2 {
		t.Errorf("server SANs: DNS %q, IP %v", s.DNSNames, s.IPAddresses)
	}
	if !s.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPv6 SAN = %v", s.IPAddresses[1])
	}
	c := devpki.ClientTemplate("prometheus.test")
	if c.CommonName != "prometheus.test" || len(c.DNSNames) != 1 ||
		len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("client template = %+v", c)
	}
}

func TestUnknownKeyType(t *testing.T) {
	root := mustCA(t, "root")
	if _, err := root.Issue(devpki.Template{CommonName: "x", KeyType: 99}); err == nil {
		t.Error("Issue with an unknown key type succeeded")
	}
}

func TestPEMRoundTrip(t *testing.T) {
	root := mustCA(t, "root")
	inter := mustIntermediate(t, root, "int")

	tests := []struct {
		name      string
		issuer    *devpki.CA
		keyType   devpki.KeyType
		wantCerts int
	}{
		{name: "ECDSA from root", issuer: root, keyType: devpki.ECDSAP256, wantCerts: 1},
		{name: "RSA from root", issuer: root, keyType: devpki.RSA2048, wantCerts: 1},
		{name: "ECDSA via intermediate", issuer: inter, keyType: devpki.ECDSAP256, wantCerts: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := devpki.ServerTemplate("sidecar.test")
			tmpl.KeyType = tc.keyType
			leaf := mustIssue(t, tc.issuer, tmpl)

			pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
			if err != nil {
				t.Fatalf("X509KeyPair: %v", err)
			}
			if len(pair.Certificate) != tc.wantCerts {
				t.Fatalf("pair has %d certificates, want %d", len(pair.Certificate), tc.wantCerts)
			}
			if !pair.Leaf.Equal(leaf.Cert) {
				t.Error("first certificate is not the leaf")
			}
			checkKeyType(t, pair.PrivateKey, tc.keyType)

			block, _ := pem.Decode(leaf.KeyPEM())
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatalf("key PEM is not a PKCS #8 PRIVATE KEY block")
			}

			direct := leaf.TLSCertificate()
			if len(direct.Certificate) != tc.wantCerts || direct.Leaf != leaf.Cert {
				t.Errorf("TLSCertificate has %d certificates", len(direct.Certificate))
			}
			for i := range direct.Certificate {
				if string(direct.Certificate[i]) != string(pair.Certificate[i]) {
					t.Errorf("certificate %d differs between PEM and TLSCertificate", i)
				}
			}
		})
	}
}

func checkKeyType(t testing.TB, key any, kt devpki.KeyType) {
	t.Helper()
	switch kt {
	case devpki.ECDSAP256:
		if _, ok := key.(*ecdsa.PrivateKey); !ok {
			t.Errorf("key is %T, want ECDSA", key)
		}
	case devpki.RSA2048:
		k, ok := key.(*rsa.PrivateKey)
		if !ok || k.N.BitLen() != 2048 {
			t.Errorf("key is %T, want RSA 2048", key)
		}
	}
}

// TestMismatchedPEMIsRefused checks that keys are fresh per leaf: one
// leaf's key does not pair with another leaf's certificate.
func TestMismatchedPEMIsRefused(t *testing.T) {
	root := mustCA(t, "root")
	a := mustIssue(t, root, devpki.ClientTemplate("a"))
	b := mustIssue(t, root, devpki.ClientTemplate("b"))
	if _, err := tls.X509KeyPair(a.CertPEM(), b.KeyPEM()); err == nil {
		t.Error("X509KeyPair accepted a certificate with another leaf's key")
	}
}
