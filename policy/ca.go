package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
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
	certs, err := parseBundle(data, "CERTIFICATE", "certificate", x509.ParseCertificate)
	if errors.Is(err, errNothingFound) {
		return nil, fmt.Errorf("%w: %w", err, ErrNoCertificates)
	}
	return certs, err
}

// errNothingFound is wrapped by parseBundle's errors for a file that holds
// no object at all. It has no text of its own: callers say what was not
// found.
var errNothingFound = quietError{}

type quietError struct{}

func (quietError) Error() string { return "" }

// parseBundle parses a file of one kind of DER object: PEM with one or more
// blocks of type typ (text between blocks, as openssl writes it, is
// ignored), or a single DER object. what names the object in errors.
func parseBundle[T any](data []byte, typ, what string, parse func([]byte) (T, error)) ([]T, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("file is empty%w", errNothingFound)
		}
		v, err := parse(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER %s (%v)%w", what, err, errNothingFound)
		}
		return []T{v}, nil
	}

	var out []T
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != typ {
			return nil, fmt.Errorf("PEM block %d is %q, want %s", n, block.Type, typ)
		}
		v, err := parse(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing %s %d: %w", what, n, err)
		}
		out = append(out, v)
	}

	if len(out) == 0 {
		return nil, fmt.Errorf("no complete PEM block%w", errNothingFound)
	}
	if err := allBlocksDecoded(data, len(out)); err != nil {
		return nil, err
	}
	return out, nil
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
