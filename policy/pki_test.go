package policy_test

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// newCA returns a fresh root CA named name.
func newCA(t testing.TB, name string) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(name)
	if err != nil {
		t.Fatalf("creating CA %q: %v", name, err)
	}
	return ca
}

// newIntermediate returns a fresh intermediate CA under parent.
func newIntermediate(t testing.TB, parent *devpki.CA, name string) *devpki.CA {
	t.Helper()
	ca, err := parent.NewIntermediate(name)
	if err != nil {
		t.Fatalf("creating intermediate %q: %v", name, err)
	}
	return ca
}

// issue signs a leaf from tmpl with ca.
func issue(t testing.TB, ca *devpki.CA, tmpl devpki.Template) *devpki.Leaf {
	t.Helper()
	leaf, err := ca.Issue(tmpl)
	if err != nil {
		t.Fatalf("issuing %q: %v", tmpl.CommonName, err)
	}
	return leaf
}

// clientWithValidity returns a client template valid from notBefore to
// notAfter.
func clientWithValidity(name string, notBefore, notAfter time.Time) devpki.Template {
	tmpl := devpki.ClientTemplate(name)
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	return tmpl
}

// pemCert returns c as one PEM CERTIFICATE block.
func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// bigOne returns 1, the number of a first CRL.
func bigOne() *big.Int { return big.NewInt(1) }
