package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// ServerOptions is what the metrics listener's TLS configuration is built
// from.
type ServerOptions struct {
	// ClientCAs are the authorities a client certificate must chain to.
	ClientCAs *x509.CertPool
	// GetCertificate picks the server keypair for a handshake.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	// MinVersion and MaxVersion bound the protocol version; zero means
	// TLS 1.2 and TLS 1.3. A MinVersion below TLS 1.2 is raised to it.
	MinVersion, MaxVersion uint16
	// CipherSuites limits the TLS 1.2 suites; nil means Go's defaults.
	CipherSuites []uint16
	// Curves limits the key exchanges; nil means Go's defaults.
	Curves []tls.CurveID
	// CRLs, if set, refuse clients whose chain holds a revoked certificate.
	CRLs *CRLSet
}

// ServerConfig returns the TLS configuration of the metrics listener.
//
// It always requires and verifies a client certificate against ClientCAs;
// there is no mode that asks for a certificate and lets a client through
// without one. Verification is crypto/tls's own (chain to a configured CA,
// validity period, the clientAuth extended key usage, intermediates sent by
// the client), because a hand-written chain builder is where mTLS bypasses
// come from.
func ServerConfig(o ServerOptions) (*tls.Config, error) {
	if o.ClientCAs == nil {
		return nil, errors.New("policy: no client CAs: refusing to build a TLS config " +
			"that accepts any client")
	}
	if o.GetCertificate == nil {
		return nil, errors.New("policy: no server certificate source")
	}

	cfg := &tls.Config{
		// TLS 1.0 and 1.1 are deprecated (RFC 8996) and Prometheus has
		// not needed them for years.
		MinVersion:       max(o.MinVersion, tls.VersionTLS12),
		MaxVersion:       o.MaxVersion,
		CipherSuites:     o.CipherSuites,
		CurvePreferences: o.Curves,

		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  o.ClientCAs,

		GetCertificate: o.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},

		// Scrape bodies are read whole by a scraper that waits for the
		// end anyway; full-size records from the first byte cost fewer
		// system calls and less framing than starting small.
		DynamicRecordSizingDisabled: true,
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < cfg.MinVersion {
		return nil, errors.New("policy: max_version is below min_version")
	}

	if crls := o.CRLs; crls != nil {
		// Runs after crypto/tls has verified the chains, on full
		// handshakes and resumptions alike, so a certificate revoked
		// after its session began cannot resume it.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return crls.Check(cs.VerifiedChains)
		}
	}
	return cfg, nil
}
