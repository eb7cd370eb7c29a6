package integration

import (
	"flag"
	"os"
	"testing"
	"time"
)

// soak turns TestSoak on, as SOAK=1 in the environment does.
var soak = flag.Bool("soak", false, "run TestSoak (also SOAK=1); SOAK_DURATION sets its length")

// Soak defaults: long enough for slow clients to cycle many times and for
// a leak of one goroutine per few hundred connections to show.
const (
	defaultSoakDuration = 2 * time.Minute
	// soakIdle is how long the proxy idles after the load before its
	// goroutines and RSS are compared with the baseline: past the idle
	// timeout of every connection, with time for the Go runtime to give
	// memory back.
	soakIdle = 30 * time.Second
)

// soakRSSMargin is how far above its baseline the proxy's RSS may end:
// the runtime keeps some of the heap the load grew, and gives it back
// only slowly.
func soakRSSMargin(base int64) int64 { return max(base/2, 24<<20) }

// TestSoak runs valid and hostile clients together against the real
// binary for SOAK_DURATION (default 2m): valid scrapers over HTTP/1.1 and
// HTTP/2, clients with no certificate, another CA's or a self-signed one,
// path tricks, slowloris, plain HTTP and bare connects. No valid scrape
// may fail, no hostile input get through, no slow connection outlive its
// timeout; after an idle period the proxy's goroutines and RSS are back
// within a margin of their baseline. "make soak" runs it.
func TestSoak(t *testing.T) {
	if !*soak && os.Getenv("SOAK") != "1" {
		t.Skip("the soak runs only with SOAK=1 or -soak (make soak)")
	}
	d := defaultSoakDuration
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("SOAK_DURATION=%q: want a duration such as 2m", v)
		}
	}

	m := startMixProxy(t)
	res := runMix(t, m, d, soakIdle)
	// The goroutines settled first; give the runtime the rest of the idle
	// period to return memory before RSS is judged.
	time.Sleep(soakIdle / 2)
	end := m.rssBytes()
	t.Logf("proxy RSS after %v idle: %.1f MiB (baseline %.1f MiB, at the end of the load "+
		"%.1f MiB)", soakIdle/2, float64(end)/(1<<20), float64(res.baseRSS)/(1<<20),
		float64(res.endRSS)/(1<<20))
	if res.baseRSS > 0 && end > res.baseRSS+soakRSSMargin(res.baseRSS) {
		t.Errorf("LEAK: the proxy's RSS is %.1f MiB after the soak and an idle period, "+
			"baseline %.1f MiB, margin %.1f MiB", float64(end)/(1<<20),
			float64(res.baseRSS)/(1<<20), float64(soakRSSMargin(res.baseRSS))/(1<<20))
	}
	if m.exited() {
		t.Error("the proxy exited during the soak")
	}
}
