package upstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// TestForwardUnreachable covers C23 and broken daemons: no response at
// all is a 502 with a short text, and the Failure says why.
func TestForwardUnreachable(t *testing.T) {
	tests := []struct {
		name     string
		addr     func(testing.TB) upstream.Address
		wantBody string
		want     upstream.Failure
	}{
		{name: "C23 closed port", addr: closedPort,
			wantBody: "upstream unavailable\n", want: upstream.FailureDial},
		{name: "C23 missing unix socket", addr: func(t testing.TB) upstream.Address {
			return mustParseAddress(t, "unix://"+filepath.Join(t.TempDir(), "none.sock"))
		}, wantBody: "upstream unavailable\n", want: upstream.FailureDial},
		{name: "closes without answering", addr: func(t testing.TB) upstream.Address {
			return rawUpstream(t, "")
		}, wantBody: "upstream error\n", want: upstream.FailureProtocol},
		{name: "answers garbage", addr: func(t testing.TB) upstream.Address {
			return rawUpstream(t, "SSH-2.0-OpenSSH_9.6\r\n\r\n")
		}, wantBody: "upstream error\n", want: upstream.FailureProtocol},
		{name: "cut inside the headers", addr: func(t testing.TB) upstream.Address {
			return rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Ty")
		}, wantBody: "upstream error\n", want: upstream.FailureProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fe := startFrontend(t, newForwarder(t, tc.addr(t)))

			resp, body, err := fe.do(t, http.MethodGet, "/metrics", nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if resp.StatusCode != http.StatusBadGateway || string(body) != tc.wantBody {
				t.Errorf("status %d body %q, want 502 %q", resp.StatusCode, body, tc.wantBody)
			}
			res := fe.result(t)
			if res.Failure != tc.want || res.Status != http.StatusBadGateway || res.Err == nil {
				t.Errorf("result = %+v, want failure %q with status 502", res, tc.want)
			}
			if res.Aborted {
				t.Error("a failure before any header was sent is marked aborted")
			}
		})
	}
}

// TestForwardTimeout covers C24a: a daemon that accepts and never answers
// gets a 504 when the scrape's deadline passes, and that deadline is the
// scraper's own, capped by MaxTimeout.
func TestForwardTimeout(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		timeout    time.Duration
		maxTimeout time.Duration
		wantAbout  time.Duration
	}{
		{name: "scrape timeout header", header: "0.3", timeout: time.Minute,
			maxTimeout: time.Minute, wantAbout: 300 * time.Millisecond},
		{name: "header capped by MaxTimeout", header: "60", timeout: time.Minute,
			maxTimeout: 300 * time.Millisecond, wantAbout: 300 * time.Millisecond},
		{name: "no header takes Timeout", timeout: 300 * time.Millisecond,
			maxTimeout: time.Minute, wantAbout: 300 * time.Millisecond},
		{name: "unparsable header takes Timeout", header: "soon",
			timeout: 300 * time.Millisecond, maxTimeout: time.Minute,
			wantAbout: 300 * time.Millisecond},
		{name: "negative header takes Timeout", header: "-5",
			timeout: 300 * time.Millisecond, maxTimeout: time.Minute,
			wantAbout: 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newForwarder(t, silentUpstream(t), func(o *upstream.Options) {
				o.Timeout, o.MaxTimeout = tc.timeout, tc.maxTimeout
			})
			fe := startFrontend(t, f)
			var h http.Header
			if tc.header != "" {
				h = http.Header{upstream.ScrapeTimeoutHeader: {tc.header}}
			}

			start := time.Now()
			resp, body, err := fe.do(t, http.MethodGet, "/metrics", h)
			elapsed := time.Since(start)
			if err != nil || resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, err %v; want 504", resp.StatusCode, err)
			}
			if string(body) != "upstream timed out\n" {
				t.Errorf("body = %q", body)
			}
			// Lower bound: the deadline was not zero. Upper bound: it was not
			// the minute the other setting would have allowed.
			if elapsed < tc.wantAbout*8/10 || elapsed > tc.wantAbout+5*time.Second {
				t.Errorf("504 after %v, want about %v", elapsed, tc.wantAbout)
			}
			if res := fe.result(t); res.Failure != upstream.FailureTimeout ||
				res.Status != http.StatusGatewayTimeout {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

// TestForwardBodyCut covers C22 and C24b: when the daemon's body breaks off
// after the headers went out, the scraper sees a broken transfer, never a
// clean short 200.
func TestForwardBodyCut(t *testing.T) {
	half := make([]byte, 48<<10)
	for i := range half {
		half[i] = byte('a' + i%26)
	}

	closeMidBody := func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(half)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	closeMidLength := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		closeMidBody(w, r)
	}
	stallMidBody := func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(half)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}

	tests := []struct {
		name    string
		handler http.HandlerFunc
		header  string
		want    upstream.Failure
	}{
		{name: "C22 chunked body then close", handler: closeMidBody,
			want: upstream.FailureBodyCopy},
		{name: "C22 short Content-Length body then close", handler: closeMidLength,
			want: upstream.FailureBodyCopy},
		{name: "C24b body stalls past the deadline", handler: stallMidBody, header: "0.5",
			want: upstream.FailureTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fe := startFrontend(t, newForwarder(t, startTCPUpstream(t, tc.handler)))
			var h http.Header
			if tc.header != "" {
				h = http.Header{upstream.ScrapeTimeoutHeader: {tc.header}}
			}

			resp, body, err := fe.do(t, http.MethodGet, "/metrics", h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want the daemon's 200", resp.StatusCode)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("reading the body: err = %v after %d bytes; want a broken transfer",
					err, len(body))
			}
			res := fe.result(t)
			if res.Failure != tc.want || !res.Aborted || res.Err == nil {
				t.Errorf("result = %+v, want failure %q, aborted", res, tc.want)
			}
			if res.Bytes != int64(len(half)) {
				t.Errorf("result counts %d bytes, want %d", res.Bytes, len(half))
			}
		})
	}
}

// TestForwardClientGoesAway checks that a scraper that disconnects cancels
// the daemon's request, before and after the response headers.
func TestForwardClientGoesAway(t *testing.T) {
	tests := []struct {
		name        string
		sendHeaders bool
	}{
		{name: "while waiting for headers"},
		{name: "while streaming the body", sendHeaders: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{}, 1)
			canceled := make(chan struct{}, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.sendHeaders {
					_, _ = io.WriteString(w, "# partial\n")
					w.(http.Flusher).Flush()
				}
				started <- struct{}{}
				select {
				case <-r.Context().Done():
					canceled <- struct{}{}
				case <-time.After(30 * time.Second):
				}
			})
			fe := startFrontend(t, newForwarder(t, startTCPUpstream(t, h)))

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fe.url+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				resp, err := fe.client.Do(req)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				done <- err
			}()

			<-started
			cancel()
			select {
			case <-canceled:
			case <-time.After(10 * time.Second):
				t.Fatal("the daemon's request context was not canceled within 10s")
			}
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("client error = %v, want context.Canceled", err)
			}
			if res := fe.result(t); res.Failure != upstream.FailureCanceled {
				t.Errorf("result = %+v, want failure canceled", res)
			}
		})
	}
}

// TestForwardSkipsInterimResponses checks that 1xx responses the daemon
// sends before its answer (103 Early Hints) are not passed on as the
// scrape's status.
func TestForwardSkipsInterimResponses(t *testing.T) {
	up := startTCPUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "metric 1\n")
	}))
	fe := startFrontend(t, newForwarder(t, up))
	resp, err := fe.client.Get(fe.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "metric 1\n" {
		t.Errorf("got %d %q, want 200 with the body", resp.StatusCode, body)
	}
}
