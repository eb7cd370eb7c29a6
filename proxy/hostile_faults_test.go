package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// halfBody is what a faulty upstream sends before it stops: more than one
// TLS record and one copy buffer's worth, so that some of it reaches the
// scraper before the fault.
var halfBody = bytes.Repeat([]byte("half_body_sample 1\n"), (192<<10)/19)

// upstreamFault is a daemon misbehaving in one way.
type upstreamFault struct {
	name    string
	handler http.HandlerFunc
	// status is what the scraper must get; 0 means a 200 whose body then
	// breaks off.
	status int
	body   string
}

func upstreamFaults() []upstreamFault {
	stall := func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(halfBody)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	cut := func(length bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if length {
				w.Header().Set("Content-Length", fmt.Sprint(2*len(halfBody)))
			}
			_, _ = w.Write(halfBody)
			w.(http.Flusher).Flush()
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		}
	}
	return []upstreamFault{
		{"C24a hangs before the headers", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, http.StatusGatewayTimeout, "upstream timed out\n"},
		{"C24b hangs mid-body", stall, 0, ""},
		{"C22 closes mid-body, chunked", cut(false), 0, ""},
		{"C22 closes mid-body, Content-Length", cut(true), 0, ""},
		{"closes before the headers", func(w http.ResponseWriter, r *http.Request) {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		}, http.StatusBadGateway, "upstream error\n"},
		{"answers garbage", func(w http.ResponseWriter, r *http.Request) {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n\r\n"))
				c.Close()
			}
		}, http.StatusBadGateway, "upstream error\n"},
	}
}

// scrapeDeadline is the scrape timeout the fault tests send; the proxy
// must end every scrape within it plus the five seconds it allows the
// last bytes to reach the scraper.
const scrapeDeadline = 500 * time.Millisecond

// TestHostileUpstreamFaults covers C22, C23 and C24 through the whole
// proxy, over HTTP/1.1 and HTTP/2: a daemon that hangs before its headers
// gets the scraper a 504 within the scrape's deadline; one that hangs or
// closes mid-body gets it a broken transfer, never a clean 200; one that
// answers garbage, a 502. Each scrape ends in time and the daemon's
// handlers are all released.
func TestHostileUpstreamFaults(t *testing.T) {
	base := settledGoroutines()
	for _, f := range upstreamFaults() {
		t.Run(f.name, func(t *testing.T) {
			up := newFaultUpstream(t, f.handler)
			pki := newTestPKI(t)
			rp := startProxy(t, pki.dir, baseConfig(pki, up.URL(), hostileConfig))
			for _, proto := range []string{"http/1.1", "h2"} {
				t.Run(proto, func(t *testing.T) {
					start := time.Now()
					status, body, err := faultScrape(t, rp.metrics, pki, proto)
					took := time.Since(start)
					checkFaultOutcome(t, f, status, body, err)
					if limit := scrapeDeadline + timeoutSlack; f.status ==
						http.StatusGatewayTimeout && took > limit {
						t.Errorf("HANG: 504 after %v, want within %v", took, limit)
					}
					if limit := scrapeDeadline + 5*time.Second + timeoutSlack; took > limit {
						t.Errorf("HANG: the scrape lasted %v, want at most %v", took, limit)
					}
				})
			}
			up.waitIdle(t, 5*time.Second)
		})
	}

	t.Run("C23 refuses connections", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		pki := newTestPKI(t)
		rp := startProxy(t, pki.dir, baseConfig(pki, "http://"+addr, hostileConfig))
		for _, proto := range []string{"http/1.1", "h2"} {
			status, body, err := faultScrape(t, rp.metrics, pki, proto)
			checkFaultOutcome(t, upstreamFault{status: http.StatusBadGateway,
				body: "upstream unavailable\n"}, status, body, err)
		}
	})
	waitGoroutines(t, base, 10*time.Second)
}

// faultScrape scrapes /metrics over proto with the scrape deadline and
// returns the status, the body and the error reading it.
func faultScrape(t testing.TB, addr string, pki *testPKI, proto string) (int, []byte, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: pki.clientTLS(proto),
		ForceAttemptHTTP2: proto == "h2"}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds",
		fmt.Sprint(scrapeDeadline.Seconds()))
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if got := resp.ProtoMajor; (got == 2) != (proto == "h2") {
		t.Errorf("spoke HTTP/%d, want %s", got, proto)
	}
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// checkFaultOutcome checks a scrape's outcome against what f requires.
func checkFaultOutcome(t testing.TB, f upstreamFault, status int, body []byte, err error) {
	t.Helper()
	if f.status != 0 {
		if err != nil || status != f.status || string(body) != f.body {
			t.Errorf("got %d %q (%v), want %d %q", status, body, err, f.status, f.body)
		}
		return
	}
	switch {
	case err == nil && status == http.StatusOK:
		t.Errorf("a broken upstream body reached the scraper as a clean 200 of %d bytes "+
			"(the upstream sent %d before failing)", len(body), len(halfBody))
	case err == nil:
		t.Errorf("status %d, want a 200 whose body breaks off", status)
	case !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "stream error"):
		t.Logf("the transfer broke with %v", err)
	}
}

// scrapeRecord is one scrape of a load loop: when it ran and how it went.
type scrapeRecord struct {
	start, end time.Time
	status     int
	err        error
}

func (r scrapeRecord) ok() bool { return r.err == nil && r.status == http.StatusOK }

// loadLoop scrapes /metrics from workers goroutines, half over HTTP/1.1
// and half over HTTP/2 on kept-alive connections, and records every
// scrape until stopped.
type loadLoop struct {
	mu      sync.Mutex
	records []scrapeRecord
	stop    func()
}

func startLoadLoop(t testing.TB, addr string, pki *testPKI, workers int) *loadLoop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &loadLoop{}
	var wg sync.WaitGroup
	for i := range workers {
		proto := []string{"http/1.1", "h2"}[i%2]
		tr := &http.Transport{TLSClientConfig: pki.clientTLS(proto),
			ForceAttemptHTTP2: proto == "h2"}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			for ctx.Err() == nil {
				l.add(scrapeOnce(c, addr))
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	l.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(l.stop)
	return l
}

func scrapeOnce(c *http.Client, addr string) scrapeRecord {
	r := scrapeRecord{start: time.Now()}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "2")
	resp, err := c.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.status = resp.StatusCode
	}
	r.err, r.end = err, time.Now()
	return r
}

func (l *loadLoop) add(r scrapeRecord) {
	l.mu.Lock()
	l.records = append(l.records, r)
	l.mu.Unlock()
}

func (l *loadLoop) snapshot() []scrapeRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]scrapeRecord(nil), l.records...)
}

// restartable is an upstream on a fixed address that can be stopped and
// started again there.
type restartable struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func (u *restartable) start(t testing.TB) {
	t.Helper()
	l, err := net.Listen("tcp", u.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", u.addr, err)
	}
	u.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "restartable_up 1")
	})}
	go func() { _ = srv.Serve(l) }()
	u.mu.Lock()
	u.srv = srv
	u.mu.Unlock()
}

func (u *restartable) stop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		_ = u.srv.Close()
		u.srv = nil
	}
}

// dropIdle closes the upstream's idle keep-alive connections.
func (u *restartable) dropIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		u.srv.SetKeepAlivesEnabled(false)
		u.srv.SetKeepAlivesEnabled(true)
	}
}

// TestC23bUpstreamRestartUnderLoad covers C23b and C24 under load: the
// daemon stops and starts twice while scrapers keep scraping. Scrapes fail
// only while it is down, with a 502, and once it is back every scrape
// succeeds again, with no restart of the proxy.
func TestC23bUpstreamRestartUnderLoad(t *testing.T) {
	up := &restartable{addr: "127.0.0.1:0"}
	up.start(t)
	t.Cleanup(up.stop)
	pki := newTestPKI(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, "http://"+up.addr, hostileConfig))
	base := settledGoroutines()

	loop := startLoadLoop(t, rp.metrics, pki, 4)
	type window struct{ down, up time.Time }
	var windows []window
	time.Sleep(500 * time.Millisecond)
	for _, down := range []time.Duration{700 * time.Millisecond, 400 * time.Millisecond} {
		w := window{down: time.Now()}
		up.stop()
		time.Sleep(down)
		w.up = time.Now()
		up.start(t)
		windows = append(windows, w)
		time.Sleep(700 * time.Millisecond)
	}
	loop.stop()

	records := loop.snapshot()
	failed, duringDown, afterLast := 0, 0, 0
	for _, r := range records {
		inDown := false
		for _, w := range windows {
			if r.start.Before(w.up.Add(50*time.Millisecond)) && r.end.After(w.down) {
				inDown = true
			}
		}
		if inDown {
			duringDown++
		}
		last := windows[len(windows)-1].up
		if r.start.After(last.Add(100 * time.Millisecond)) {
			afterLast++
		}
		if r.ok() {
			continue
		}
		failed++
		switch {
		case !inDown:
			t.Errorf("a scrape failed while the upstream was up: started %v after the "+
				"first stop, status %d, err %v", r.start.Sub(windows[0].down).Round(
				time.Millisecond), r.status, r.err)
		case r.err != nil && r.status == 0:
			t.Errorf("a scrape during the outage failed without an answer: %v", r.err)
		}
	}
	if failed == 0 {
		t.Error("no scrape failed while the upstream was down: the test proves nothing")
	}
	if afterLast < 10 {
		t.Errorf("only %d scrapes after the upstream came back", afterLast)
	}
	t.Logf("figures: %d scrapes, %d overlapping the outages, %d failed, %d after recovery",
		len(records), duringDown, failed, afterLast)
	waitGoroutines(t, base, 10*time.Second, up)
}

// TestHostileReloadUnderLoad rotates the server keypair and rewrites the
// CA bundle every 100 to 1000 ms, by atomic rename and in place, while
// allowed clients scrape over new and kept-alive connections, HTTP/1.1
// and HTTP/2: not one scrape may fail.
func TestHostileReloadUnderLoad(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	up := newRecordingUpstream(t)
	rp := startProxy(t, pki.dir, baseConfig(pki, up.URL, hostileConfig))
	other := mustCA(t, "another trusted CA")

	fresh := startScrapeLoop(t, rp.metrics, pki.ca.Pool(), pki.client.TLSCertificate())
	kept := startLoadLoop(t, rp.metrics, pki, 2)
	rotations := map[string]int{}
	end := time.Now().Add(4 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		time.Sleep(time.Duration(100+rand.IntN(900)) * time.Millisecond)
		next := mustIssue(t, pki.ca, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
		switch i % 4 {
		case 0:
			atomicRename(t, pki.dir, next)
			rotations["keypair renamed"]++
		case 1:
			writeFile(t, pki.dir, "server.pem", next.CertPEM(), 0o644)
			writeFile(t, pki.dir, "server-key.pem", next.KeyPEM(), 0o600)
			rotations["keypair rewritten in place"]++
		case 2:
			renameInto(t, pki.dir, "ca.pem", append(pki.ca.CertPEM(), other.CertPEM()...))
			rotations["CA bundle grown"]++
		case 3:
			writeFile(t, pki.dir, "ca.pem", pki.ca.CertPEM(), 0o644)
			rotations["CA bundle shrunk in place"]++
		}
	}
	time.Sleep(300 * time.Millisecond)
	fresh.stop()
	kept.stop()

	failedKept := 0
	for _, r := range kept.snapshot() {
		if !r.ok() {
			failedKept++
			t.Errorf("a kept-alive scrape failed: status %d, err %v", r.status, r.err)
		}
	}
	if n := fresh.failed.Load(); n != 0 {
		t.Errorf("%d scrapes on new connections failed; last: %v", n, fresh.lastErr.Load())
	}
	reloads := strings.Count(rp.logs.String(), "certificates reloaded")
	if reloads == 0 {
		t.Error("no reload happened: the test proves nothing")
	}
	t.Logf("figures: rotations %v; %d reloads; scrapes on new connections %d (failed %d), "+
		"kept-alive %d (failed %d)", rotations, reloads, fresh.ok.Load()+fresh.failed.Load(),
		fresh.failed.Load(), len(kept.snapshot()), failedKept)
}

// renameInto writes data beside dir/name and renames it over.
func renameInto(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	tmp := writeFile(t, dir, "."+name+".tmp", data, 0o644)
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
