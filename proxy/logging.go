package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
)

// NewLogger returns the root logger for cfg, writing to w.
func NewLogger(cfg Log, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "mtls-metrics-proxy",
		Level:      hclog.LevelFromString(cfg.Level),
		JSONFormat: cfg.Format == "json",
		Output:     w,
	})
}

// stdLogger adapts l for net/http and httputil, whose lines carry no level.
func stdLogger(l hclog.Logger, level hclog.Level) *log.Logger {
	return l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: level})
}

// logHandshakeFailure logs a refused TLS handshake once, with what the
// client presented: subject and issuer, never the certificate itself.
//
// At most a burst of lines per interval is logged (limit); the next line
// let through counts those held back, so that a flood of bad clients
// cannot flood the log.
func logHandshakeFailure(l hclog.Logger, limit *logLimiter, remote net.Addr,
	err error) policy.Reason {
	reason := policy.ClassifyHandshakeError(err, time.Now())
	level := hclog.Info
	if reason.IsNoise() {
		level = hclog.Debug
	}
	if l.GetLevel() > level {
		return reason
	}
	ok, held := limit.allow(time.Now())
	if !ok {
		return reason
	}

	args := []any{"remote_addr", remote.String(), "reason", string(reason), "err", err.Error()}
	if held > 0 {
		args = append(args, "similar_lines_suppressed", held)
	}
	if cert := peerCertificate(err); cert != nil {
		args = append(args, "peer_subject", cert.Subject.String(),
			"peer_issuer", cert.Issuer.String())
		if reason == policy.ReasonExpired || reason == policy.ReasonNotYetValid {
			args = append(args, "not_before", cert.NotBefore.UTC().Format(time.RFC3339),
				"not_after", cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if hint := handshakeHint(reason, err); hint != "" {
		args = append(args, "hint", hint)
	}
	l.Log(level, "TLS handshake refused", args...)
	return reason
}

// peerCertificate digs the client's leaf out of a verification error.
func peerCertificate(err error) *x509.Certificate {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		return ve.UnverifiedCertificates[0]
	}
	return nil
}

func handshakeHint(reason policy.Reason, err error) string {
	switch reason {
	case policy.ReasonNoClientCert:
		return "the client sent no certificate: none is configured (tls_config cert_file " +
			"and key_file), or, for Go clients such as Prometheus, its issuer is not " +
			"among this listener's ca_certs"
	case policy.ReasonUnknownAuthority:
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) && len(ve.UnverifiedCertificates) == 1 {
			return "no configured CA signed it; if an intermediate CA signed it, the " +
				"client must send the intermediate too, or ca_certs must hold it"
		}
		return "no configured CA signed it"
	case policy.ReasonBadKeyUsage:
		return "the certificate's extended key usage does not allow client authentication"
	case policy.ReasonPlaintextHTTP:
		return "the client spoke plain HTTP to the TLS port; use https in the scrape config"
	case policy.ReasonClientRejected:
		return "the client refused our server certificate; check its CA and server_name"
	}
	return ""
}
