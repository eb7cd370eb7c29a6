package policy

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"time"
)

// ParseCRLs returns every certificate revocation list in data: PEM with one
// or more "X509 CRL" blocks, or a single DER list.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	return parseBundle(data, "X509 CRL", "CRL", parseCRL)
}

// parseCRL parses one DER list. x509.ParseRevocationList ignores bytes
// after the list; here they are an error, since they may hold a second
// list whose revocations would otherwise silently not be enforced.
func parseCRL(der []byte) (*x509.RevocationList, error) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	if len(crl.Raw) != len(der) {
		return nil, fmt.Errorf("%d bytes of trailing data after the CRL", len(der)-len(crl.Raw))
	}
	return crl, nil
}

// CRLSet answers whether a certificate was revoked by its issuer. Only
// lists signed by a trusted CA are admitted; a list is applied to a chain
// only where that same CA (subject and key) issued the certificate.
type CRLSet struct {
	revoked map[string]map[string]time.Time // issuer key -> serial -> when
	lists   []*x509.RevocationList
}

func issuerKey(ca *x509.Certificate) string {
	return string(ca.RawSubject) + "\x00" + string(ca.RawSubjectPublicKeyInfo)
}

// NewCRLSet checks that each list is signed by one of cas and indexes the
// revoked serial numbers.
func NewCRLSet(crls []*x509.RevocationList, cas []*x509.Certificate) (*CRLSet, error) {
	s := &CRLSet{revoked: make(map[string]map[string]time.Time), lists: crls}
	for i, crl := range crls {
		ca := signer(crl, cas)
		if ca == nil {
			return nil, fmt.Errorf("CRL %d (issuer %q) is not signed by any configured CA",
				i+1, crl.Issuer)
		}
		k := issuerKey(ca)
		if s.revoked[k] == nil {
			s.revoked[k] = make(map[string]time.Time)
		}
		for _, e := range crl.RevokedCertificateEntries {
			s.revoked[k][e.SerialNumber.String()] = e.RevocationTime
		}
	}
	return s, nil
}

func signer(crl *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// RevokedError is returned when a certificate in a client's chain is on a
// revocation list.
type RevokedError struct {
	// Subject and Serial name the revoked certificate.
	Subject string
	Serial  string
	// RevokedAt is when its issuer revoked it.
	RevokedAt time.Time
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("certificate %q (serial %s) was revoked at %s", e.Subject, e.Serial,
		e.RevokedAt.UTC().Format(time.RFC3339))
}

// Check returns a [*RevokedError] if any certificate in any of the
// verified chains was revoked by the CA that issued it.
func (s *CRLSet) Check(chains [][]*x509.Certificate) error {
	if s == nil || len(s.revoked) == 0 {
		return nil
	}
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			serials := s.revoked[issuerKey(chain[i+1])]
			if when, ok := serials[chain[i].SerialNumber.String()]; ok {
				return &RevokedError{Subject: chain[i].Subject.String(),
					Serial: chain[i].SerialNumber.Text(16), RevokedAt: when}
			}
		}
	}
	return nil
}

// Stale returns the lists whose next update is past at now. They are
// still enforced: a revocation does not lapse because its list is old.
func (s *CRLSet) Stale(now time.Time) []*x509.RevocationList {
	if s == nil {
		return nil
	}
	var stale []*x509.RevocationList
	for _, crl := range s.lists {
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			stale = append(stale, crl)
		}
	}
	return stale
}

// Lists returns the revocation lists in the set.
func (s *CRLSet) Lists() []*x509.RevocationList {
	if s == nil {
		return nil
	}
	return s.lists
}
