package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// ParseCABundle returns every certificate in a CA bundle: PEM with one or
// more CERTIFICATE blocks (text between blocks, as openssl writes it, is
// ignored), or a single DER certificate.
//
// It fails closed. A bundle with no certificate returns [ErrNoCertificates]
// rather than an empty pool, because an empty pool would refuse every
// client and an operator would chase the wrong problem. A block of any
// other type is an error too: a private key in a CA file is a leak waiting
// to happen, and a CRL there is a CRL that would silently not be enforced.
func ParseCABundle(data []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("file is empty: %w", ErrNoCertificates)
		}
		cert, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", ErrNoCertificates)
		}
		return []*x509.Certificate{cert}, nil
	}

	var certs []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", n, err)
		}
		certs = append(certs, cert)
	}

	if len(certs) == 0 {
		return nil, fmt.Errorf("no complete PEM block: %w", ErrNoCertificates)
	}
	if err := allBlocksDecoded(data, len(certs)); err != nil {
		return nil, err
	}
	return certs, nil
}

// allBlocksDecoded checks that every PEM block that data begins was
// decoded. encoding/pem skips a block it cannot decode (a corrupt body, a
// mismatched END line) and goes on with the next one, and a file caught
// half-written ends in a block with no END at all; either way a CA or a
// CRL would silently be missing.
func allBlocksDecoded(data []byte, decoded int) error {
	begun := bytes.Count(data, []byte("-----BEGIN "))
	if begun != decoded {
		return fmt.Errorf("%d of %d PEM blocks are incomplete or corrupt", begun-decoded, begun)
	}
	return nil
}

// NewPool returns a pool that trusts exactly certs.
func NewPool(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}
