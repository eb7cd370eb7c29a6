package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
)

// snapshot is one consistent set of TLS material and the TLS configuration
// built from it. It never changes; a reload builds a new one and swaps it
// in whole, so a handshake sees either the old set or the new one.
type snapshot struct {
	gen      uint64
	material *material
	certs    *certStore
	tls      *tls.Config
}

// certReloader owns the metrics listener's TLS material: it loads it,
// serves the current snapshot, and replaces it when the files change.
type certReloader struct {
	ms    MetricsService
	file  string
	lines keyLines
	log   hclog.Logger

	current atomic.Pointer[snapshot]

	mu          sync.Mutex // serialises reloads; guards the fields below
	fingerprint [sha256.Size]byte
	failures    int
	lastExpiry  time.Time

	stats reloadStats
}

// reloadStats counts reload outcomes for the proxy's own metrics.
type reloadStats struct {
	success, failure atomic.Uint64
	lastSuccess      atomic.Int64 // unix seconds
}

// newCertReloader loads the material for the first time. Problems with
// the files come back as a [*Problems], as at any start.
func newCertReloader(cfg *Config, log hclog.Logger) (*certReloader, error) {
	r := &certReloader{ms: cfg.MetricsService, file: cfg.File, lines: cfg.lines, log: log}
	r.fingerprint = fingerprint(materialFiles(r.ms))
	snap, err := r.build(1, time.Now())
	if err != nil {
		return nil, err
	}
	r.current.Store(snap)
	r.stats.lastSuccess.Store(time.Now().Unix())
	return r, nil
}

// build loads the material and makes a snapshot of it.
func (r *certReloader) build(gen uint64, now time.Time) (*snapshot, error) {
	probs := &Problems{File: r.file, lines: r.lines}
	m := loadMaterial(r.ms, probs, now)
	if len(probs.List) > 0 {
		probs.sort()
		return nil, probs
	}

	certs, err := newCertStore(m.keypairs)
	if err != nil {
		return nil, fmt.Errorf("caching server keypairs: %w", err)
	}
	t := r.ms.TLS
	cfg, err := policy.ServerConfig(policy.ServerOptions{
		ClientCAs:      m.pool,
		GetCertificate: certs.GetCertificate,
		MinVersion:     t.MinVersion,
		MaxVersion:     t.MaxVersion,
		CipherSuites:   t.CipherSuites,
		Curves:         t.Curves,
		CRLs:           m.crls,
	})
	if err != nil {
		certs.Stop()
		return nil, err
	}
	return &snapshot{gen: gen, material: m, certs: certs, tls: cfg}, nil
}

// Current returns the snapshot in service.
func (r *certReloader) Current() *snapshot { return r.current.Load() }

// Reload re-reads the files if their content changed since the last
// successful load, and swaps in the new material if all of it is good.
// force reloads even when nothing seems to have changed (SIGHUP). On any
// problem the old material stays in service.
func (r *certReloader) Reload(trigger string, force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	fp := fingerprint(materialFiles(r.ms))
	if fp == r.fingerprint && !force {
		return nil
	}

	old := r.current.Load()
	snap, err := r.build(old.gen+1, time.Now())
	if err != nil {
		// Remember the broken state so that it is reported once, not on
		// every periodic check; the next change to any file retries.
		r.fingerprint = fp
		r.failures++
		r.stats.failure.Add(1)
		r.log.Warn("certificate reload failed, keeping the previous material",
			"trigger", trigger, "failures_in_a_row", r.failures, "err", err.Error())
		return err
	}

	r.fingerprint = fp
	r.failures = 0
	r.current.Store(snap)
	old.certs.Stop()
	r.stats.success.Add(1)
	r.stats.lastSuccess.Store(time.Now().Unix())
	r.logChanges(trigger, old.material, snap.material)
	for _, w := range snap.material.warnings {
		r.log.Warn(w)
	}
	r.checkExpiry(time.Now())
	return nil
}

// logChanges says what a reload changed: each new server certificate with
// its serial and expiry, and the CAs now trusted.
func (r *certReloader) logChanges(trigger string, old, cur *material) {
	r.log.Info("certificates reloaded", "trigger", trigger, "keypairs", len(cur.keypairs),
		"cas", countCAs(cur.cas))
	for i, kp := range cur.keypairs {
		if i < len(old.keypairs) && old.keypairs[i].Leaf.Equal(kp.Leaf) {
			continue
		}
		r.log.Info("serving a new certificate", "keypair", i,
			"subject", kp.Leaf.Subject.String(), "serial", kp.Leaf.SerialNumber.Text(16),
			"not_after", kp.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !slices.EqualFunc(allCAs(old.cas), allCAs(cur.cas), (*x509.Certificate).Equal) {
		for _, c := range allCAs(cur.cas) {
			r.log.Info("trusting client CA", "subject", c.Subject.String(),
				"not_after", c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

func allCAs(files []caFile) []*x509.Certificate {
	var all []*x509.Certificate
	for _, f := range files {
		all = append(all, f.certs...)
	}
	return all
}

// checkExpiry warns about every server certificate and CA that expires
// within the warning window. Called at start, after reloads, and daily.
func (r *certReloader) checkExpiry(now time.Time) {
	r.lastExpiry = now
	m := r.current.Load().material
	for _, c := range m.inventory(r.ms) {
		left := c.NotAfter.Sub(now)
		if left > r.ms.ExpiryWarning.Duration {
			continue
		}
		r.log.Warn("certificate expires soon", "kind", c.Kind, "file", c.File,
			"subject", c.Subject, "not_after", c.NotAfter.UTC().Format(time.RFC3339),
			"left", left.Round(time.Minute).String())
	}
	for _, crl := range m.crls.Stale(now) {
		r.log.Warn("CRL is past its next update; still enforced", "issuer",
			crl.Issuer.String(), "next_update", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
}

// fingerprint hashes the content of files, and the error for any that
// cannot be read, so that any change, including a file vanishing, shows.
func fingerprint(files []string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			data = []byte("unreadable: " + err.Error())
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
