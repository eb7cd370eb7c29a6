package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
	"time"
)

// connInfo is what the proxy knows of an established mTLS connection: the
// client's verified leaf, when its chain stops being valid, and which
// generation of the trusted material it was last verified against. It
// lives as long as the connection.
type connInfo struct {
	leaf     *x509.Certificate
	chain    []*x509.Certificate // as sent by the client, leaf first
	notAfter time.Time           // earliest expiry in the verified chain
	gen      atomic.Uint64

	// flush writes out what the connection holds back (see
	// coalescingConn); nil when nothing is held back.
	flush func() error
}

func newConnInfo(cs tls.ConnectionState, gen uint64) *connInfo {
	ci := &connInfo{chain: cs.PeerCertificates}
	if len(cs.PeerCertificates) > 0 {
		ci.leaf = cs.PeerCertificates[0]
	}
	if len(cs.VerifiedChains) > 0 {
		for _, c := range cs.VerifiedChains[0] {
			if ci.notAfter.IsZero() || c.NotAfter.Before(ci.notAfter) {
				ci.notAfter = c.NotAfter
			}
		}
	}
	ci.gen.Store(gen)
	return ci
}

type connInfoKey struct{}

func withConnInfo(ctx context.Context, ci *connInfo) context.Context {
	if ci == nil {
		return ctx
	}
	return context.WithValue(ctx, connInfoKey{}, ci)
}

func connInfoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci
}

// stillTrusted re-verifies the connection's client chain against snap,
// once per connection after each reload: a client whose CA was dropped, or
// whose certificate was revoked, must not go on scraping over a keep-alive
// connection it opened before.
func (ci *connInfo) stillTrusted(snap *snapshot, now time.Time) error {
	if ci.gen.Load() == snap.gen {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range ci.chain[1:] {
		inter.AddCert(c)
	}
	chains, err := ci.leaf.Verify(x509.VerifyOptions{
		Roots:         snap.material.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	if err := snap.material.crls.Check(chains); err != nil {
		return err
	}
	ci.gen.Store(snap.gen)
	return nil
}
