package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowUpstream is a daemon whose /metrics answers only when the test
// releases it. The test owns it; a cleanup releases and closes it.
type slowUpstream struct {
	srv     *httptest.Server
	body    []byte
	arrived chan struct{} // gets a value when a scrape reaches the handler
	release chan struct{} // closed to let scrapes answer

	releaseOnce sync.Once
}

func newSlowUpstream(t testing.TB) *slowUpstream {
	t.Helper()
	u := &slowUpstream{
		body:    exposition(4000),
		arrived: make(chan struct{}, 16),
		release: make(chan struct{}),
	}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	// Cleanups run last in, first out: release the handlers before
	// Close waits for them.
	t.Cleanup(u.srv.Close)
	t.Cleanup(u.unblock)
	return u
}

func (u *slowUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.arrived <- struct{}{}
	select {
	case <-u.release:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(u.body)
}

func (u *slowUpstream) unblock() { u.releaseOnce.Do(func() { close(u.release) }) }

// waitArrival waits until a scrape is inside the upstream's handler.
func (u *slowUpstream) waitArrival(t testing.TB) time.Time {
	t.Helper()
	select {
	case <-u.arrived:
		return time.Now()
	case <-time.After(waitTimeout):
		t.Fatalf("no scrape reached the upstream within %v", waitTimeout)
		return time.Time{}
	}
}

// exposition returns a text exposition of n samples: large enough that a
// truncated body cannot pass for a whole one.
func exposition(n int) []byte {
	var b bytes.Buffer
	b.WriteString("# TYPE slow_upstream_sample gauge\n")
	for i := range n {
		fmt.Fprintf(&b, "slow_upstream_sample{i=\"%d\"} %d\n", i, i)
	}
	return b.Bytes()
}

// scrapeAsync scrapes url in a goroutine and delivers the result.
func scrapeAsync(c *http.Client, url string) <-chan scrapeOutcome {
	ch := make(chan scrapeOutcome, 1)
	go func() {
		res, err := scrape(c, url)
		ch <- scrapeOutcome{res: res, err: err, at: time.Now()}
	}()
	return ch
}

// scrapeOutcome is what scrapeAsync delivers.
type scrapeOutcome struct {
	res scrapeResult
	err error
	at  time.Time
}

// waitRefused dials addr until the connection is refused, and fails the
// test if that does not happen in time.
func waitRefused(t testing.TB, addr string) {
	t.Helper()
	eventually(t, waitTimeout, "new connections to "+addr+" refused", func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return errors.New("connection accepted")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("dial failed, but not refused: %w", err)
		}
		return nil
	})
}

// TestC29GracefulShutdownDuringScrape sends SIGTERM to the proxy while a
// scrape waits on a slow daemon. The proxy must stop accepting at once,
// let the scrape finish with its whole body, and exit 0 within the grace
// period; a scrape that outlives the grace period is cut, and the log
// says so.
func TestC29GracefulShutdownDuringScrape(t *testing.T) {
	t.Run("scrape finishes within the grace period", func(t *testing.T) {
		const grace = 15 * time.Second
		const upstreamDelay = 2 * time.Second
		k := newPKI(t)
		up := newSlowUpstream(t)
		px := startProxy(t, k, proxyOptions{upstream: up.srv.URL, shutdownTimeout: grace})

		result := scrapeAsync(mtlsClient(t, k), px.metricsURL())
		arrived := up.waitArrival(t)
		signalled := time.Now()
		px.signal(t, syscall.SIGTERM)

		// Draining: the proxy says how many scrapes it waits for, and
		// refuses new connections while the scrape is still running.
		e := px.waitLog(t, "shutting down", func(e logEntry) bool {
			return e.str("@message") == "shutting down"
		})
		if e["in_flight"] != 1.0 {
			t.Errorf("shutting down with in_flight = %v, want 1", e["in_flight"])
		}
		waitRefused(t, px.addr)
		select {
		case o := <-result:
			t.Fatalf("scrape ended while the upstream still held it: status %d, err %v",
				o.res.status, o.err)
		default:
		}
		if px.exited() {
			t.Fatalf("proxy exited while a scrape was in flight")
		}

		// The daemon answers about two seconds after the scrape began.
		time.Sleep(time.Until(arrived.Add(upstreamDelay)))
		up.unblock()

		o := <-result
		if o.err != nil {
			t.Fatalf("in-flight scrape failed: %v", o.err)
		}
		if o.res.status != http.StatusOK || o.res.body != string(up.body) {
			t.Errorf("in-flight scrape: status %d, %d of %d body bytes, want 200 and all",
				o.res.status, len(o.res.body), len(up.body))
		}
		if code := px.waitExit(t, grace); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		if took := time.Since(signalled); took > grace {
			t.Errorf("exit %v after SIGTERM, beyond the grace period of %v", took, grace)
		}
	})

	t.Run("scrape outliving the grace period is cut", func(t *testing.T) {
		const grace = 2 * time.Second
		k := newPKI(t)
		up := newSlowUpstream(t) // never released while the proxy runs
		px := startProxy(t, k, proxyOptions{upstream: up.srv.URL, shutdownTimeout: grace})

		result := scrapeAsync(mtlsClient(t, k), px.metricsURL())
		up.waitArrival(t)
		signalled := time.Now()
		px.signal(t, syscall.SIGTERM)

		code := px.waitExit(t, grace+waitTimeout)
		took := time.Since(signalled)
		if code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		// It waited for the scrape, but not past the grace period (with
		// slack for a loaded machine).
		if took < grace-200*time.Millisecond || took > grace+5*time.Second {
			t.Errorf("exit %v after SIGTERM, want about the grace period of %v", took, grace)
		}
		px.waitLog(t, "that the grace period cut a scrape", func(e logEntry) bool {
			return e.str("@level") == "warn" && e["in_flight"] == 1.0 &&
				strings.Contains(e.str("@message"), "grace period")
		})
		if o := <-result; o.err == nil && o.res.status == http.StatusOK {
			t.Errorf("cut scrape looked complete: status 200, %d bytes", len(o.res.body))
		}
	})
}

// TestSignalsExitCleanly stops an idle proxy, one with a keep-alive
// connection open, with each signal an operator or a supervisor sends. It
// must exit 0, and at once: an idle connection is no reason to wait out
// the grace period.
func TestSignalsExitCleanly(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  os.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const grace = 30 * time.Second
			k := newPKI(t)
			up := httptest.NewServer(http.HandlerFunc(
				func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("up 1\n")) }))
			t.Cleanup(up.Close)
			px := startProxy(t, k, proxyOptions{upstream: up.URL, shutdownTimeout: grace})

			if res := mustScrape(t, mtlsClient(t, k), px.metricsURL()); res.status != 200 {
				t.Fatalf("scrape before the signal: status %d, want 200", res.status)
			}
			signalled := time.Now()
			px.signal(t, tc.sig)

			if code := px.waitExit(t, grace); code != 0 {
				t.Errorf("exit code %d after %s, want 0", code, tc.name)
			}
			if took := time.Since(signalled); took > grace/3 {
				t.Errorf("exit took %v after %s with only an idle connection", took, tc.name)
			}
			px.waitLog(t, "stopped", func(e logEntry) bool {
				return e.str("@message") == "stopped"
			})
		})
	}
}
