package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// certStore picks the server keypair for each handshake. certmagic's cache
// does the matching (exact SNI, then wildcards, then the local IP against IP
// SANs); when nothing matches, the first configured keypair answers, so
// that a scrape by IP or by an unexpected name still gets a certificate
// the client can judge for itself.
type certStore struct {
	cache    *certmagic.Cache
	magic    *certmagic.Config
	fallback *tls.Certificate
}

// acmeALPN is the protocol an ACME server offers for TLS-ALPN challenges.
const acmeALPN = "acme-tls/1"

func newCertStore(keypairs []tls.Certificate) (*certStore, error) {
	if len(keypairs) == 0 {
		return nil, errNoKeypairs
	}

	// The cache and its config point at each other; the atomic pointer
	// breaks the cycle.
	var current atomic.Pointer[certmagic.Config]
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			return current.Load(), nil
		},
		Logger: zap.NewNop(),
	})
	magic := certmagic.New(cache, certmagic.Config{
		// Only our own files are served: no OCSP fetches, no ACME, no
		// storage on disk, no log lines of certmagic's own.
		OCSP:   certmagic.OCSPConfig{DisableStapling: true},
		Logger: zap.NewNop(),
	})
	current.Store(magic)

	s := &certStore{cache: cache, magic: magic}
	for i, kp := range keypairs {
		if _, err := magic.CacheUnmanagedTLSCertificate(context.Background(), kp,
			[]string{fmt.Sprintf("keypair-%d", i)}); err != nil {
			cache.Stop()
			return nil, fmt.Errorf("caching keypair %d: %w", i, err)
		}
	}
	first := keypairs[0]
	s.fallback = &first
	return s, nil
}

// GetCertificate is the tls.Config hook.
func (s *certStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	// certmagic answers a hello that offers only acme-tls/1 with an ACME
	// challenge certificate, looked up in its storage. We never run ACME,
	// so such a hello is refused before certmagic can touch the disk.
	if slices.Contains(hello.SupportedProtos, acmeALPN) && len(hello.SupportedProtos) == 1 {
		return nil, errors.New("ACME TLS-ALPN challenges are not served here")
	}

	c, err := s.magic.GetCertificate(hello)
	if err != nil || c == nil || len(c.Certificate) == 0 {
		return s.fallback, nil
	}
	return c, nil
}

// Stop ends the cache's background maintenance.
func (s *certStore) Stop() { s.cache.Stop() }
