package load

import (
	"crypto/tls"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/stats"
)

// Result is what a load reports, as one JSON object.
type Result struct {
	// Scrapes counts the scrapes that got a whole 200 answer.
	Scrapes int64 `json:"scrapes"`
	// Errors counts the failed ones; ErrorKinds splits them by kind
	// (transport, status, length, encoding), FirstError tells one.
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
	// DurationSeconds runs from the start signal to the last scrape's end.
	DurationSeconds float64 `json:"duration_s"`
	// PerSecond is Scrapes / DurationSeconds.
	PerSecond float64 `json:"per_second"`
	// P50Ms and P99Ms are latency percentiles of the good scrapes, from
	// sending the request to reading the body's last byte; nil without
	// any good scrape.
	P50Ms *float64 `json:"p50_ms"`
	P99Ms *float64 `json:"p99_ms"`
	// BodyBytes is the body bytes read by the good scrapes.
	BodyBytes int64 `json:"body_bytes"`
	// Conns counts the connections dialed during the timed part.
	Conns int64 `json:"conns"`
	// Resumed counts scrapes whose TLS session was resumed.
	Resumed int64 `json:"resumed"`
	// TLS describes the first connection of the warm-up, nil for http.
	TLS *TLSInfo `json:"tls,omitempty"`
	// Proto is the HTTP version of the answers, such as HTTP/1.1.
	Proto string `json:"proto"`
}

// TLSInfo names what a TLS connection negotiated.
type TLSInfo struct {
	// Version is the protocol version, such as TLS 1.3.
	Version string `json:"version"`
	// CipherSuite is the suite's standard name.
	CipherSuite string `json:"cipher_suite"`
	// KeyExchange is the group used, such as X25519MLKEM768.
	KeyExchange string `json:"key_exchange"`
	// ALPN is the negotiated protocol, "" when none was.
	ALPN string `json:"alpn"`
}

func tlsInfo(cs *tls.ConnectionState) *TLSInfo {
	if cs == nil {
		return nil
	}
	return &TLSInfo{
		Version:     tls.VersionName(cs.Version),
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
		KeyExchange: cs.CurveID.String(),
		ALPN:        cs.NegotiatedProtocol,
	}
}

// millis returns the p-th percentile of sorted in milliseconds, or nil.
func millis(sorted []time.Duration, p float64) *float64 {
	v, ok := stats.Percentile(sorted, p)
	if !ok {
		return nil
	}
	ms := float64(v) / float64(time.Millisecond)
	return &ms
}
