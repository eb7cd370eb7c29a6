package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// Reason names why a TLS handshake failed. The values are stable: they are
// logged and used as metric labels.
type Reason string

// The reasons a handshake on the metrics listener can fail.
const (
	ReasonNoClientCert     Reason = "no_client_cert"
	ReasonUnknownAuthority Reason = "unknown_authority"
	ReasonSelfSigned       Reason = "self_signed"
	ReasonExpired          Reason = "expired"
	ReasonNotYetValid      Reason = "not_yet_valid"
	ReasonBadKeyUsage      Reason = "bad_key_usage"
	ReasonBadCertificate   Reason = "bad_certificate"
	ReasonRevoked          Reason = "revoked"
	ReasonProtocolVersion  Reason = "protocol_version"
	ReasonNoSharedParams   Reason = "no_shared_params"
	ReasonClientRejected   Reason = "client_rejected_server"
	ReasonPlaintextHTTP    Reason = "plaintext_http"
	ReasonBadRecord        Reason = "bad_record"
	ReasonEOF              Reason = "eof"
	ReasonTimeout          Reason = "timeout"
	ReasonOther            Reason = "other"
)

// HandshakeReasons lists every Reason ClassifyHandshakeError returns.
func HandshakeReasons() []Reason {
	return []Reason{ReasonNoClientCert, ReasonUnknownAuthority, ReasonSelfSigned,
		ReasonExpired, ReasonNotYetValid, ReasonBadKeyUsage, ReasonBadCertificate,
		ReasonRevoked, ReasonProtocolVersion, ReasonNoSharedParams, ReasonClientRejected,
		ReasonPlaintextHTTP, ReasonBadRecord, ReasonEOF, ReasonTimeout, ReasonOther}
}

// IsNoise reports whether a failure with this reason is the routine churn
// of load balancer health checks and port scanners rather than a client
// trying and failing to scrape. Such failures belong at debug level.
func (r Reason) IsNoise() bool {
	return r == ReasonEOF || r == ReasonTimeout
}

// ClassifyHandshakeError names the reason a server-side handshake failed.
// now is the time verification ran at, used to tell an expired certificate
// from one not yet valid.
func ClassifyHandshakeError(err error, now time.Time) Reason {
	if err == nil {
		return ""
	}

	var revoked *RevokedError
	if errors.As(err, &revoked) {
		return ReasonRevoked
	}

	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		if c := unknown.Cert; c != nil && isSelfSigned(c) {
			return ReasonSelfSigned
		}
		return ReasonUnknownAuthority
	}

	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			if invalid.Cert != nil && now.Before(invalid.Cert.NotBefore) {
				return ReasonNotYetValid
			}
			return ReasonExpired
		case x509.IncompatibleUsage:
			return ReasonBadKeyUsage
		default:
			return ReasonBadCertificate
		}
	}

	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return ReasonBadCertificate
	}

	var record tls.RecordHeaderError
	if errors.As(err, &record) {
		if LooksLikeHTTP(record.RecordHeader) {
			return ReasonPlaintextHTTP
		}
		return ReasonBadRecord
	}

	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return ReasonClientRejected
	}

	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) {
		return ReasonEOF
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonTimeout
	}

	// crypto/tls reports these as plain errors.New values with no type or
	// sentinel to match; the tests pin each text against a real handshake so
	// that a change in Go shows up as a failing test, not a silent "other".
	msg := err.Error()
	switch {
	case strings.Contains(msg, "bad record MAC"):
		// An OpenSSL client (curl) that refuses our certificate under
		// TLS 1.3 sends its alert in a form that fails to decrypt here;
		// in a handshake over TCP that is what this error means.
		return ReasonClientRejected
	case strings.Contains(msg, "didn't provide a certificate"):
		return ReasonNoClientCert
	case strings.Contains(msg, "unsupported versions"),
		strings.Contains(msg, "protocol version not supported"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "no cipher suite supported"),
		strings.Contains(msg, "no ECDHE curve supported"),
		strings.Contains(msg, "no key exchanges supported"),
		strings.Contains(msg, "no mutually supported"):
		return ReasonNoSharedParams
	}
	return ReasonOther
}

// LooksLikeHTTP reports whether the first five bytes a client sent to the
// TLS port start a clear-text HTTP request. crypto/tls hands over the bytes
// of any record it cannot read; only requests deserve an HTTP answer.
func LooksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}

func isSelfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
