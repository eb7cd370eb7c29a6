package policy

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// tlsVersions are the protocol versions a listener may be limited to.
// TLS 1.0 and 1.1 are not among them (RFC 8996).
var tlsVersions = map[string]uint16{
	"TLS12": tls.VersionTLS12,
	"TLS13": tls.VersionTLS13,
}

// ParseTLSVersion parses "TLS12" or "TLS13".
func ParseTLSVersion(s string) (uint16, error) {
	if v, ok := tlsVersions[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("unknown TLS version %q; want TLS12 or TLS13", s)
}

// ParseCipherSuites parses cipher suite names as Go spells them, such as
// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256. Only suites Go considers secure
// are accepted; TLS 1.3 suites are not configurable and are refused too,
// since listing them would suggest a choice that does not exist.
func ParseCipherSuites(names []string) ([]uint16, error) {
	var ids []uint16
	for _, n := range names {
		id, err := cipherSuite(n)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func cipherSuite(name string) (uint16, error) {
	var accepted []string
	for _, s := range tls.CipherSuites() {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			if s.Name == name {
				return 0, fmt.Errorf("cipher suite %s is a TLS 1.3 suite; Go always "+
					"enables all of them and they cannot be configured", name)
			}
			continue
		}
		if s.Name == name {
			return s.ID, nil
		}
		accepted = append(accepted, s.Name)
	}
	for _, s := range tls.InsecureCipherSuites() {
		if s.Name == name {
			return 0, fmt.Errorf("cipher suite %s is insecure and refused", name)
		}
	}
	return 0, fmt.Errorf("unknown cipher suite %q; accepted: %s", name,
		strings.Join(accepted, ", "))
}

// curves are the key exchanges a listener may be limited to, by the names
// Go gives them.
var curves = []tls.CurveID{
	tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521,
}

// ParseCurves parses key exchange names: X25519MLKEM768,
// SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, CurveP256, CurveP384,
// CurveP521.
func ParseCurves(names []string) ([]tls.CurveID, error) {
	var ids []tls.CurveID
	for _, n := range names {
		i := slices.IndexFunc(curves, func(c tls.CurveID) bool { return c.String() == n })
		if i < 0 {
			var accepted []string
			for _, c := range curves {
				accepted = append(accepted, c.String())
			}
			return nil, fmt.Errorf("unknown curve %q; accepted: %s", n,
				strings.Join(accepted, ", "))
		}
		ids = append(ids, curves[i])
	}
	return ids, nil
}
