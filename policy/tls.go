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

	return &tls.Config{
		// TLS 1.0 and 1.1 are deprecated (RFC 8996) and Prometheus has
		// not needed them for years.
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  o.ClientCAs,

		GetCertificate: o.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}, nil
}
