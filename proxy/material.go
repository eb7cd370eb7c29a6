package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
)

// material is what the metrics listener serves with: its keypairs and the
// CAs it trusts. It is immutable once loaded.
type material struct {
	keypairs []tls.Certificate
	cas      []caFile
	pool     *x509.CertPool
	crls     *policy.CRLSet
	warnings []string
}

// caFile is one ca_certs file and the certificates it held.
type caFile struct {
	path  string
	certs []*x509.Certificate
}

// loadMaterial reads and checks every keypair and CA file of ms. Each
// problem names its key and file; all of them are collected in p.
func loadMaterial(ms MetricsService, p *Problems, now time.Time) *material {
	m := &material{}
	for i, kp := range ms.Keypairs {
		key := fmt.Sprintf("metrics_service.keypairs[%d]", i)
		cert, warns, err := loadKeypair(kp, now)
		if err != nil {
			p.add(key, err.Error())
			continue
		}
		for _, w := range warns {
			m.warnings = append(m.warnings, key+": "+w)
		}
		m.keypairs = append(m.keypairs, cert)
	}

	var all []*x509.Certificate
	for i, path := range ms.CACerts {
		key := fmt.Sprintf("metrics_service.ca_certs[%d]", i)
		certs, err := loadFile(path, "CA bundle", policy.ParseCABundle)
		if err != nil {
			p.add(key, err.Error())
			continue
		}
		for _, c := range certs {
			if w := caWarning(c, now); w != "" {
				m.warnings = append(m.warnings, fmt.Sprintf("%s: %s: %s", key, path, w))
			}
		}
		m.cas = append(m.cas, caFile{path: path, certs: certs})
		all = append(all, certs...)
	}
	m.pool = policy.NewPool(all)

	var lists []*x509.RevocationList
	for i, path := range ms.CRLFiles {
		key := fmt.Sprintf("metrics_service.crl_files[%d]", i)
		l, err := loadFile(path, "CRL file", policy.ParseCRLs)
		if err != nil {
			p.add(key, err.Error())
			continue
		}
		lists = append(lists, l...)
	}
	if len(lists) > 0 {
		set, err := policy.NewCRLSet(lists, all)
		if err != nil {
			p.add("metrics_service.crl_files", err.Error())
		}
		m.crls = set
		for _, crl := range set.Stale(now) {
			m.warnings = append(m.warnings, fmt.Sprintf("metrics_service.crl_files: the CRL "+
				"of %q was due for update at %s; it is still enforced", crl.Issuer,
				crl.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	return m
}

// loadFile reads the file at path and parses it with parse; what names
// the kind of file in errors.
func loadFile[T any](path, what string, parse func([]byte) ([]T, error)) ([]T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	v, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return v, nil
}

// materialFiles returns every file the material is read from, for change
// detection.
func materialFiles(ms MetricsService) []string {
	var files []string
	for _, kp := range ms.Keypairs {
		files = append(files, kp.CertFile, kp.KeyFile)
	}
	files = append(files, ms.CACerts...)
	return append(files, ms.CRLFiles...)
}

func caWarning(c *x509.Certificate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("CA %q expired at %s; clients it signed will be refused",
			c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	case !c.IsCA:
		return fmt.Sprintf("certificate %q is not a CA; it can only pin that one "+
			"self-signed client certificate", c.Subject)
	}
	return ""
}

// loadKeypair reads a keypair and checks it the way a handshake would
// need it, so that each mistake is reported with its file at start-up
// instead of as a failed handshake later. It returns warnings about
// settings that work here but will trouble clients.
func loadKeypair(kp Keypair, now time.Time) (tls.Certificate, []string, error) {
	certPEM, err := readPEM(kp.CertFile, "certificate")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM, err := readPEM(kp.KeyFile, "private key")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if err := checkCertPEM(kp.CertFile, certPEM); err != nil {
		return tls.Certificate{}, nil, err
	}
	if err := checkKeyPEM(kp.KeyFile, keyPEM); err != nil {
		return tls.Certificate{}, nil, err
	}

	keyWarning, err := checkKeyMode(kp.KeyFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}

	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s with %s: %w", kp.CertFile, kp.KeyFile, err)
	}

	leaf := cert.Leaf
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, nil, fmt.Errorf("%s: certificate %q expired at %s",
			kp.CertFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.URIs) == 0 &&
		leaf.Subject.CommonName == "" {
		return tls.Certificate{}, nil, fmt.Errorf("%s: certificate names no host: "+
			"it has neither SANs nor a common name", kp.CertFile)
	}
	warns := keypairWarnings(kp.CertFile, leaf, now)
	if keyWarning != "" {
		warns = append(warns, keyWarning)
	}
	return cert, warns, nil
}

// checkKeyMode refuses a private key file anyone may write (someone could
// swap in a key of their own) and warns about one anyone may read (C11).
// The mode is that of the file a symlink leads to, as Kubernetes secret
// volumes link their files.
func checkKeyMode(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("reading private key: %w", err)
	}
	mode := fi.Mode().Perm()
	switch {
	case mode&0o002 != 0:
		return "", fmt.Errorf("%s: private key file is writable by every user "+
			"(mode %04o); make it 0600 or 0400", path, mode)
	case mode&0o004 != 0:
		return fmt.Sprintf("%s: private key file is readable by every user (mode %04o); "+
			"make it 0600 or 0400", path, mode), nil
	}
	return "", nil
}

// certInfo describes one certificate in service, for logs, check and the
// proxy's own metrics.
type certInfo struct {
	Kind     string // "server" or "client_ca"
	File     string
	Subject  string
	Serial   string
	NotAfter time.Time
}

// inventory lists every server certificate and CA in service.
func (m *material) inventory(ms MetricsService) []certInfo {
	var out []certInfo
	for i, kp := range m.keypairs {
		out = append(out, certInfo{Kind: "server", File: ms.Keypairs[i].CertFile,
			Subject: kp.Leaf.Subject.String(), Serial: kp.Leaf.SerialNumber.Text(16),
			NotAfter: kp.Leaf.NotAfter})
	}
	for _, f := range m.cas {
		for _, c := range f.certs {
			out = append(out, certInfo{Kind: "client_ca", File: f.path,
				Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16),
				NotAfter: c.NotAfter})
		}
	}
	return out
}

func keypairWarnings(file string, leaf *x509.Certificate, now time.Time) []string {
	var w []string
	if len(leaf.DNSNames)+len(leaf.IPAddresses) == 0 {
		w = append(w, fmt.Sprintf("%s has no DNS or IP SubjectAltName; Go clients "+
			"such as Prometheus ignore the common name and will reject it", file))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		w = append(w, fmt.Sprintf("%s lacks the serverAuth extended key usage; "+
			"Prometheus will reject it with \"incompatible key usage\"", file))
	}
	if now.Before(leaf.NotBefore) {
		w = append(w, fmt.Sprintf("%s is not valid until %s; check the clock", file,
			leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	return w
}

// readPEM reads a file that must hold PEM.
func readPEM(path, what string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("no %s file given", what)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: %s file is empty", path, what)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%s: not PEM: no \"-----BEGIN\" line in the %s file", path, what)
	}
	return data, nil
}

func checkCertPEM(path string, data []byte) error {
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		return fmt.Errorf("%s: no complete PEM block", path)
	case strings.Contains(block.Type, "PRIVATE KEY"):
		// Said before anything else so that the key is not echoed into
		// an error about it.
		return fmt.Errorf("%s: holds a private key, not a certificate "+
			"(are cert_file and key_file swapped?)", path)
	case block.Type != "CERTIFICATE":
		return fmt.Errorf("%s: first PEM block is %q, want CERTIFICATE", path, block.Type)
	}
	return nil
}

func checkKeyPEM(path string, data []byte) error {
	block, rest := pem.Decode(data)
	// openssl ecparam -genkey writes the curve's parameters before the key;
	// tls.X509KeyPair skips them, and so does this check.
	for block != nil && block.Type == "EC PARAMETERS" {
		block, rest = pem.Decode(rest)
	}
	switch {
	case block == nil:
		return fmt.Errorf("%s: no complete PEM block", path)
	case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED":
		return fmt.Errorf("%s: the private key is encrypted; the proxy needs it "+
			"unencrypted (openssl pkey -in KEY -out PLAIN), readable only by its user", path)
	case block.Type == "CERTIFICATE":
		return fmt.Errorf("%s: holds a certificate, not a private key "+
			"(are cert_file and key_file swapped?)", path)
	case !strings.HasSuffix(block.Type, "PRIVATE KEY"):
		return fmt.Errorf("%s: PEM block is %q, want a PRIVATE KEY", path, block.Type)
	}
	return nil
}

// errNoKeypairs is returned by newCertStore when there is nothing to serve.
var errNoKeypairs = errors.New("no server keypairs")
