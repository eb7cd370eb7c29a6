// Package devpki issues throwaway certificate authorities and leaf
// certificates for development, demos and tests.
//
// Everything here lives in memory until a caller writes it out. Keys are
// fresh on every call, so no private key is ever checked in. Nothing in this
// package is meant for production trust.
package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// KeyType selects the algorithm of a generated key.
type KeyType int

const (
	// ECDSAP256 is the default: small and fast to sign with.
	ECDSAP256 KeyType = iota
	// RSA2048 is there for clients and tests that need RSA.
	RSA2048
)

// DefaultValidity is how long a certificate lives when the template does not
// say otherwise.
const DefaultValidity = 30 * 24 * time.Hour

// Template describes a certificate to issue. Zero fields take defaults:
// valid from an hour ago for [DefaultValidity], an ECDSA P-256 key.
type Template struct {
	// CommonName is the subject's CN.
	CommonName string
	// DNSNames, IPAddresses, URIs and EmailAddresses become SANs.
	DNSNames       []string
	IPAddresses    []net.IP
	URIs           []*url.URL
	EmailAddresses []string
	// Organization and OrganizationalUnits fill the subject's O and OU.
	Organization        []string
	OrganizationalUnits []string
	// NotBefore and NotAfter bound the validity period.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage lists the extended key usages; nil leaves the extension out.
	ExtKeyUsage []x509.ExtKeyUsage
	// KeyType picks the key algorithm.
	KeyType KeyType
}

// ServerTemplate returns a template for a server certificate valid for hosts,
// each either a DNS name or an IP address. The first host is also the CN.
func ServerTemplate(hosts ...string) Template {
	t := Template{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	if len(hosts) > 0 {
		t.CommonName = hosts[0]
	}
	return t
}

// ClientTemplate returns a template for a client certificate with the given
// CN, which is also its one DNS SAN.
func ClientTemplate(name string) Template {
	return Template{
		CommonName:  name,
		DNSNames:    []string{name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// Leaf is an issued certificate with its key and the intermediates between
// it and the root, leaf first.
type Leaf struct {
	Cert          *x509.Certificate
	Key           crypto.Signer
	Intermediates []*x509.Certificate
}

// CA is a certificate authority that can issue leaves and intermediates.
type CA struct {
	Leaf
}

// caValidity is how long a CA lives when its template does not say.
const caValidity = 365 * 24 * time.Hour

// NewCA makes a self-signed root CA named name, valid for a year.
func NewCA(name string) (*CA, error) {
	return NewCAFrom(Template{CommonName: name})
}

// NewCAFrom makes a self-signed root CA from t; only its names, validity
// and key type are used. Empty Organization gets the dev PKI's name.
func NewCAFrom(t Template) (*CA, error) {
	return newCA(t, nil)
}

// NewIntermediate makes a CA named name signed by ca.
func (ca *CA) NewIntermediate(name string) (*CA, error) {
	return newCA(Template{CommonName: name}, ca)
}

func newCA(t Template, parent *CA) (*CA, error) {
	if len(t.Organization) == 0 {
		t.Organization = []string{"mtls-metrics-proxy dev PKI"}
	}
	if t.NotAfter.IsZero() {
		if t.NotBefore.IsZero() {
			t.NotBefore = time.Now().Add(-time.Hour)
		}
		t.NotAfter = t.NotBefore.Add(caValidity)
	}
	t.ExtKeyUsage = nil
	tmpl, key, err := prepare(t)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature

	if parent == nil {
		leaf, err := sign(tmpl, tmpl, key, key)
		if err != nil {
			return nil, err
		}
		return &CA{Leaf: leaf}, nil
	}

	leaf, err := sign(tmpl, parent.Cert, key, parent.Key)
	if err != nil {
		return nil, err
	}
	leaf.Intermediates = parent.chainBelowRoot()
	return &CA{Leaf: leaf}, nil
}

// chainBelowRoot returns the certificates a leaf signed by ca must carry so
// that a verifier holding only the root can build its chain.
func (ca *CA) chainBelowRoot() []*x509.Certificate {
	if ca.Cert.CheckSignatureFrom(ca.Cert) == nil {
		return nil
	}
	return append([]*x509.Certificate{ca.Cert}, ca.Intermediates...)
}

// Issue signs a new leaf certificate described by t.
func (ca *CA) Issue(t Template) (*Leaf, error) {
	tmpl, key, err := prepare(t)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if t.KeyType == RSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}

	leaf, err := sign(tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, err
	}
	leaf.Intermediates = ca.chainBelowRoot()
	return &leaf, nil
}

// prepare turns t into an x509 template with defaults filled in and makes
// its key.
func prepare(t Template) (*x509.Certificate, crypto.Signer, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}

	key, err := newKey(t.KeyType)
	if err != nil {
		return nil, nil, err
	}

	notBefore, notAfter := t.NotBefore, t.NotAfter
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = notBefore.Add(DefaultValidity)
	}

	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         t.CommonName,
			Organization:       t.Organization,
			OrganizationalUnit: t.OrganizationalUnits,
		},
		DNSNames:       t.DNSNames,
		IPAddresses:    t.IPAddresses,
		URIs:           t.URIs,
		EmailAddresses: t.EmailAddresses,
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		ExtKeyUsage:    t.ExtKeyUsage,
	}
	return tmpl, key, nil
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case ECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating ECDSA key: %w", err)
		}
		return k, nil
	case RSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generating RSA key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unknown key type %d", kt)
	}
}

func sign(tmpl, parent *x509.Certificate, key, parentKey crypto.Signer) (Leaf, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return Leaf{}, fmt.Errorf("signing certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Leaf{}, fmt.Errorf("parsing certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return Leaf{Cert: cert, Key: key}, nil
}

// CertPEM returns the certificate followed by its intermediates, as a
// server or client presents them.
func (l *Leaf) CertPEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw})
	for _, c := range l.Intermediates {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM returns the private key in PKCS #8 form.
func (l *Leaf) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		// Only keys made by newKey reach here, and both kinds marshal.
		panic(fmt.Sprintf("devpki: marshaling private key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TLSCertificate returns the leaf as a [tls.Certificate] with its chain.
func (l *Leaf) TLSCertificate() tls.Certificate {
	chain := [][]byte{l.Cert.Raw}
	for _, c := range l.Intermediates {
		chain = append(chain, c.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: l.Key, Leaf: l.Cert}
}

// Pool returns a pool holding only this CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}
