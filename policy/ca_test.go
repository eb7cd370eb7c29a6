package policy_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

func TestParseCABundle(t *testing.T) {
	caA, caB, caC := newCA(t, "CA-A"), newCA(t, "CA-B"), newCA(t, "CA-C")
	intA := newIntermediate(t, caA, "INT-A1")
	leaf := issue(t, caA, devpki.ClientTemplate("cli-ok"))

	three := bytes.Join([][]byte{pemCert(caA.Cert), pemCert(caB.Cert), pemCert(caC.Cert)}, nil)
	withText := bytes.Join([][]byte{
		[]byte("Subject: CN=CA-A\nissuer=CN=CA-A\n"), pemCert(caA.Cert),
		[]byte("\n# the second one\nBag Attributes\n"), pemCert(caB.Cert),
		[]byte("trailing text\n"),
	}, nil)
	crlDER, err := x509.CreateRevocationList(nil, &x509.RevocationList{Number: bigOne()},
		caA.Cert, caA.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER})
	key := leaf.KeyPEM()

	tests := []struct {
		name    string
		data    []byte
		want    []*x509.Certificate
		wantErr error // checked with errors.Is; errAny for "some error"
	}{
		{name: "C05 several roots all kept", data: three,
			want: []*x509.Certificate{caA.Cert, caB.Cert, caC.Cert}},
		{name: "text between blocks", data: withText,
			want: []*x509.Certificate{caA.Cert, caB.Cert}},
		{name: "root and intermediate", data: append(pemCert(caA.Cert), pemCert(intA.Cert)...),
			want: []*x509.Certificate{caA.Cert, intA.Cert}},
		{name: "CRLF line ends", data: bytes.ReplaceAll(pemCert(caA.Cert), []byte("\n"),
			[]byte("\r\n")), want: []*x509.Certificate{caA.Cert}},
		{name: "DER single certificate", data: caB.Cert.Raw,
			want: []*x509.Certificate{caB.Cert}},

		{name: "empty file", data: nil, wantErr: policy.ErrNoCertificates},
		{name: "only whitespace", data: []byte(" \n\t\r\n"), wantErr: policy.ErrNoCertificates},
		{name: "garbage", data: []byte("not a certificate at all"),
			wantErr: policy.ErrNoCertificates},
		{name: "DER with trailing bytes", data: append(bytes.Clone(caA.Cert.Raw), 0, 0),
			wantErr: policy.ErrNoCertificates},
		{name: "truncated PEM only", data: pemCert(caA.Cert)[:200],
			wantErr: policy.ErrNoCertificates},
		{name: "BEGIN line only", data: []byte("-----BEGIN CERTIFICATE-----\n"),
			wantErr: policy.ErrNoCertificates},
		{name: "private key block", data: key, wantErr: errAny},
		{name: "certificate then private key", data: append(pemCert(caA.Cert), key...),
			wantErr: errAny},
		{name: "private key then certificate", data: append(bytes.Clone(key),
			pemCert(caA.Cert)...), wantErr: errAny},
		{name: "CRL block", data: crl, wantErr: errAny},
		{name: "certificate then CRL", data: append(pemCert(caA.Cert), crl...), wantErr: errAny},
		{name: "CERTIFICATE block with junk bytes", data: pem.EncodeToMemory(&pem.Block{
			Type: "CERTIFICATE", Bytes: []byte("junk")}), wantErr: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseCABundle(tc.data)
			checkBundleResult(t, got, err, tc.want, tc.wantErr)
		})
	}
}

// TestParseCABundleHalfWrittenSecondCertificate checks a bundle caught
// half-written (C13): the first certificate is complete, the second is cut
// off after its BEGIN line. It must be an error, or a reload would put in
// service a bundle that silently dropped a CA, instead of keeping the last
// good one as DESIGN.md asks.
func TestParseCABundleHalfWrittenSecondCertificate(t *testing.T) {
	caA, caB := newCA(t, "CA-A"), newCA(t, "CA-B")
	second := pemCert(caB.Cert)
	data := append(pemCert(caA.Cert), second[:len(second)/2]...)

	got, err := policy.ParseCABundle(data)
	if err == nil {
		t.Errorf("ParseCABundle(complete + half a certificate) = %d certificates, no error; "+
			"want an error", len(got))
	}
}

// errAny stands for "an error of any kind" in tables.
var errAny = errors.New("any error")

func checkBundleResult(t testing.TB, got []*x509.Certificate, err error,
	want []*x509.Certificate, wantErr error) {
	t.Helper()
	switch {
	case wantErr == errAny:
		if err == nil {
			t.Fatalf("got %d certificates, want an error", len(got))
		}
		if errors.Is(err, policy.ErrNoCertificates) {
			t.Errorf("error %v wraps ErrNoCertificates; a present but wrong block "+
				"must not read as an empty file", err)
		}
		return
	case wantErr != nil:
		if !errors.Is(err, wantErr) {
			t.Fatalf("error = %v, want errors.Is %v", err, wantErr)
		}
		return
	case err != nil:
		t.Fatalf("unexpected error: %v", err)
	}

	if len(got) != len(want) {
		t.Fatalf("got %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("certificate %d is %q, want %q", i, got[i].Subject, want[i].Subject)
		}
	}
}

// TestBundlePoolTrustsEveryCA checks C05 end to end: a client of each CA in
// a bundle verifies against the pool built from it.
func TestBundlePoolTrustsEveryCA(t *testing.T) {
	cas := []*devpki.CA{newCA(t, "CA-A"), newCA(t, "CA-B"), newCA(t, "CA-C")}
	var bundle []byte
	for _, ca := range cas {
		bundle = append(bundle, pemCert(ca.Cert)...)
	}
	certs, err := policy.ParseCABundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pool := policy.NewPool(certs)

	for _, ca := range cas {
		t.Run(ca.Cert.Subject.CommonName, func(t *testing.T) {
			leaf := issue(t, ca, devpki.ClientTemplate("client of "+ca.Cert.Subject.CommonName))
			_, err := leaf.Cert.Verify(x509.VerifyOptions{
				Roots:     pool,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
			if err != nil {
				t.Errorf("client of %s does not verify: %v", ca.Cert.Subject, err)
			}
		})
	}

	t.Run("other CA", func(t *testing.T) {
		leaf := issue(t, newCA(t, "CA-X"), devpki.ClientTemplate("stranger"))
		_, err := leaf.Cert.Verify(x509.VerifyOptions{
			Roots:     pool,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("client of an unlisted CA: err = %v, want UnknownAuthorityError", err)
		}
	})
}

func TestNewPoolEmpty(t *testing.T) {
	leaf := issue(t, newCA(t, "CA-A"), devpki.ClientTemplate("c"))
	_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: policy.NewPool(nil)})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("empty pool: err = %v, want UnknownAuthorityError", err)
	}
}

func FuzzParseCABundle(f *testing.F) {
	ca := newCA(f, "CA-A")
	other := newCA(f, "CA-B")
	leaf := issue(f, ca, devpki.ClientTemplate("c"))
	two := append(pemCert(ca.Cert), pemCert(other.Cert)...)
	for _, seed := range [][]byte{
		nil, []byte("garbage"), ca.Cert.Raw, pemCert(ca.Cert), two, two[:len(two)-100],
		leaf.CertPEM(), leaf.KeyPEM(), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"),
		[]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := policy.ParseCABundle(data)
		if err != nil {
			if certs != nil {
				t.Fatalf("error %v with %d certificates", err, len(certs))
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for i, c := range certs {
			if c == nil {
				t.Fatalf("certificate %d is nil", i)
			}
		}
	})
}
