package upstream_test

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// payload is a deterministic stream of size pseudo-random bytes.
func payload(size int64) io.Reader {
	src := rand.NewChaCha8([32]byte{1, 2, 3})
	return io.LimitReader(src, size)
}

// payloadHandler writes size bytes of payload, with or without a
// Content-Length, in 32 KiB writes.
func payloadHandler(size int64, withLength bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if withLength {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		_, _ = io.CopyBuffer(w, payload(size), make([]byte, 32<<10))
	}
}

func payloadSum(t testing.TB, size int64) [sha256.Size]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, payload(size)); err != nil {
		t.Fatal(err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// TestForwardLargeBody covers C22: a large body arrives whole, checksum
// and all, with one scrape and with five at once.
func TestForwardLargeBody(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	want := payloadSum(t, size)

	tests := []struct {
		name       string
		withLength bool
		scrapes    int
	}{
		{name: "chunked", scrapes: 1},
		{name: "Content-Length", withLength: true, scrapes: 1},
		{name: "five at once", scrapes: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := startTCPUpstream(t, payloadHandler(size, tc.withLength))
			fe := startFrontend(t, newForwarder(t, addr))

			var wg sync.WaitGroup
			for range tc.scrapes {
				wg.Go(func() { checkPayloadScrape(t, fe, size, want) })
			}
			wg.Wait()
			for range tc.scrapes {
				if res := fe.result(t); res.Failure != "" || res.Bytes != size {
					t.Errorf("result = %+v, want %d bytes", res, size)
				}
			}
		})
	}
}

func checkPayloadScrape(t testing.TB, fe *frontend, size int64, want [sha256.Size]byte) {
	t.Helper()
	resp, err := fe.client.Get(fe.url + "/metrics")
	if err != nil {
		t.Errorf("scrape: %v", err)
		return
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || n != size {
		t.Errorf("read %d of %d bytes: %v", n, size, err)
		return
	}
	if [sha256.Size]byte(h.Sum(nil)) != want {
		t.Error("checksum of the forwarded body differs from the daemon's")
	}
}

// TestForwardStreams proves the proxy does not hold the body back: the
// daemon writes a first part and waits; the scraper must read that part
// before the daemon writes the rest.
func TestForwardStreams(t *testing.T) {
	tests := []struct {
		name       string
		first      int
		rest       int
		withLength bool
		// mustArrive is how much of the first part the scraper waits for.
		// With a Content-Length the proxy does not flush after each read,
		// so up to a write buffer of the first part may still be held.
		mustArrive int
	}{
		{name: "chunked small first part", first: 1 << 10, rest: 1 << 20,
			mustArrive: 1 << 10},
		{name: "chunked large first part", first: 1 << 20, rest: 4 << 20,
			mustArrive: 1 << 20},
		{name: "Content-Length", first: 1 << 20, rest: 4 << 20, withLength: true,
			mustArrive: 1<<20 - 64<<10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			releaseRest := func() { once.Do(func() { close(release) }) }
			t.Cleanup(releaseRest)

			total := int64(tc.first + tc.rest)
			h := func(w http.ResponseWriter, r *http.Request) {
				if tc.withLength {
					w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
				}
				body := payload(total)
				_, _ = io.CopyN(w, body, int64(tc.first))
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.Copy(w, body)
			}
			fe := startFrontend(t, newForwarder(t, startTCPUpstream(t, http.HandlerFunc(h))))

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fe.url+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := fe.client.Do(req)
			if err != nil {
				t.Fatalf("no response headers while the daemon holds the rest: %v", err)
			}
			defer resp.Body.Close()

			hash := sha256.New()
			if _, err := io.CopyN(hash, resp.Body, int64(tc.mustArrive)); err != nil {
				t.Fatalf("first part did not arrive before the daemon wrote the rest: %v", err)
			}
			releaseRest()
			n, err := io.Copy(hash, resp.Body)
			if err != nil || int64(tc.mustArrive)+n != total {
				t.Fatalf("read %d of %d bytes: %v", int64(tc.mustArrive)+n, total, err)
			}
			if [sha256.Size]byte(hash.Sum(nil)) != payloadSum(t, total) {
				t.Error("checksum of the forwarded body differs from the daemon's")
			}
		})
	}
}

func BenchmarkForward(b *testing.B) {
	const size = 100 << 10
	// A fixed body, so that the daemon's side allocates nothing per
	// request and the figures are the forwarder's.
	body, err := io.ReadAll(payload(size))
	if err != nil {
		b.Fatal(err)
	}
	addr := startTCPUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(body)
	}))
	f := newForwarder(b, addr)
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Accept", "text/plain;version=0.0.4")

	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{header: make(http.Header)}
		res := f.Forward(w, r, "", false)
		if res.Failure != "" || w.n != size {
			b.Fatalf("result = %+v after %d bytes", res, w.n)
		}
	}
}
