package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// timeoutSlack is how late past its configured timeout a connection may
// end on a loaded two-core machine running the race detector.
const timeoutSlack = 2 * time.Second

// connCase is a hostile way to open a connection to the metrics listener.
// start opens it and returns the connection to watch and when the clock
// started; the server must end it within bound.
type connCase struct {
	name  string
	start func(t *testing.T, env *hostileEnv) (net.Conn, time.Time)
	bound time.Duration
}

// dialTCP opens a plain TCP connection, closed when the test ends.
func dialTCP(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sending returns a start function that writes b on a new TCP
// connection, then stays silent.
func sending(b []byte) func(*testing.T, *hostileEnv) (net.Conn, time.Time) {
	return func(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
		c := dialTCP(t, env.rp.metrics)
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		return c, start
	}
}

// clientHello returns the first TLS record a Go client sends.
func clientHello(t testing.TB) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		_ = tls.Client(a, &tls.Config{ServerName: "sidecar.test"}).Handshake()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// oldTLS returns a start function that offers only TLS version v.
func oldTLS(v uint16) func(*testing.T, *hostileEnv) (net.Conn, time.Time) {
	return func(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
		raw := dialTCP(t, env.rp.metrics)
		start := time.Now()
		cfg := env.pki.clientTLS("http/1.1")
		cfg.MinVersion, cfg.MaxVersion = v, v
		tc := tls.Client(raw, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Errorf("BYPASS: a %s handshake succeeded", tls.VersionName(v))
		}
		return raw, start
	}
}

// trickle returns a start function that completes the handshake and then
// writes the pieces one every interval until the server ends the
// connection.
func trickle(interval time.Duration, pieces ...string) func(*testing.T,
	*hostileEnv) (net.Conn, time.Time) {
	return func(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
		c := dialMetrics(t, env.rp.metrics, env.pki, "http/1.1")
		start := time.Now()
		go func() {
			for _, p := range pieces {
				if _, err := io.WriteString(c, p); err != nil {
					return
				}
				time.Sleep(interval)
			}
		}()
		return c, start
	}
}

// slowHeaders is a request whose header lines never end.
func slowHeaders() []string {
	out := []string{"GET /metrics HTTP/1.1\r\n", "Host: sidecar.test\r\n"}
	for i := range 100 {
		out = append(out, fmt.Sprintf("X-Slow-%d: 1\r\n", i))
	}
	return out
}

// h2Silent returns a start function that opens an HTTP/2 connection,
// sends what more it must, and then stays silent.
func h2Silent(more func(c *h2Conn)) func(*testing.T, *hostileEnv) (net.Conn, time.Time) {
	return func(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
		c := dialH2(t, env.rp.metrics, env.pki)
		_ = c.conn.SetDeadline(time.Time{})
		if more != nil {
			more(c)
		}
		return c.conn, time.Now()
	}
}

// openHeaderBlock sends a HEADERS frame of a scrape without END_HEADERS:
// the header block stays open.
func openHeaderBlock(c *h2Conn) {
	var block bytes.Buffer
	e := hpack.NewEncoder(&block)
	for _, f := range getHeaders("/metrics") {
		_ = e.WriteField(f)
	}
	_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1,
		BlockFragment: block.Bytes(), EndStream: true})
	c.flush()
}

// afterOneScrape completes a scrape over HTTP/1.1 and then idles on the
// kept-alive connection.
func afterOneScrape(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
	a := sendRaw(t, env.rp.metrics, env.pki, "GET",
		[]byte("GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n\r\n"))
	if a.status() != http.StatusOK {
		t.Fatalf("scrape: %d %v", a.status(), a.err)
	}
	_ = a.conn.SetDeadline(time.Time{})
	return a.conn, time.Now()
}

// connEnd is how long a watched connection lasted.
type connEnd struct {
	took  time.Duration
	ended bool
}

// watchConns opens every case's connection, one after the other, then
// waits for all of them to end at once (parallel subtests would run only
// GOMAXPROCS at a time), closes them and returns how long each lasted.
func watchConns(t *testing.T, env *hostileEnv, cases []connCase) []connEnd {
	t.Helper()
	ends := make([]connEnd, len(cases))
	var wg sync.WaitGroup
	for i, tc := range cases {
		c, start := tc.start(t, env)
		wg.Go(func() {
			defer c.Close()
			took, ended := waitConnEnd(c, start, tc.bound+timeoutSlack+100*time.Millisecond)
			ends[i] = connEnd{took, ended}
		})
	}
	wg.Wait()
	return ends
}

// TestHostileConnectionsEnd covers C25 and C26c and slow clients: each
// hostile way of holding a connection open ends within the timeout that
// governs it (handshake_timeout 1s, read_header_timeout 1s, idle_timeout
// 2s), the upstream hears nothing, and afterwards the goroutine count is
// back to its baseline and valid scrapes work. The cases run at once.
func TestHostileConnectionsEnd(t *testing.T) {
	env := startHostile(t, "")
	hs, hdr, idle := time.Second, time.Second, 2*time.Second
	hello := clientHello(t)
	cases := []connCase{
		{"C25b connect and send nothing", sending(nil), hs},
		{"C25b half a ClientHello", sending(hello[:len(hello)/2]), hs},
		{"C25b record header promising 16 KiB", sending([]byte{0x16, 3, 1, 0x40, 0}), hs},
		{"C25c random bytes", sending([]byte("\x00\x01\x02\x03 not TLS at all\r\n")), 0},
		{"C25c SSH banner", sending([]byte("SSH-2.0-OpenSSH_9.6\r\n")), 0},
		{"C25a plain HTTP request", sending([]byte(
			"GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n\r\n")), 0},
		{"C25a plain HTTP request line only", sending([]byte("GET /metrics HTTP/1.1\r\n")), hs},
		{"C26c TLS 1.0 offer", oldTLS(tls.VersionTLS10), 0},
		{"C26c TLS 1.1 offer", oldTLS(tls.VersionTLS11), 0},
		{"idle after the handshake", trickle(0), hdr},
		{"slowloris header lines every 300ms", trickle(300*time.Millisecond,
			slowHeaders()...), hdr},
		{"slowloris request line byte by byte", trickle(200*time.Millisecond,
			strings.Split("GET /metrics HTTP/1.1\r\n", "")...), hdr},
		{"idle keep-alive after a scrape", afterOneScrape, idle},
		{"h2 preface then silence", h2Silent(nil), idle},
		{"h2 header block never ended", h2Silent(openHeaderBlock), idle},
	}

	before := len(env.up.requests())
	base := settledGoroutines()
	ended := watchConns(t, env, cases)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.bound + timeoutSlack
			if e := ended[i]; !e.ended || e.took > limit {
				t.Errorf("HANG: the connection lasted %v (ended %v), want at most %v",
					e.took.Round(time.Millisecond), e.ended, limit)
			}
		})
	}
	noneSince(t, env.up, before+1, "hostile connections") // +1: afterOneScrape
	checkScrapes(t, env.rp.metrics, env.pki)
	waitGoroutines(t, base, 10*time.Second, env.up)
	t.Logf("figures: %d hostile connection kinds", len(cases))

	// The plain HTTP client read why, in HTTP.
	c := dialTCP(t, env.rp.metrics)
	fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n\r\n")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("HTTP/1.0 400 Bad Request\r\n")) ||
		!bytes.Contains(b, []byte("Client sent an HTTP request to an HTTPS server.")) {
		t.Errorf("C25a plain HTTP got %q", b)
	}
	// Noise is not logged as errors.
	if strings.Contains(env.rp.logs.String(), "[ERROR]") {
		t.Errorf("hostile connections were logged as errors:\n%s",
			firstLines(env.rp.logs.String(), 40))
	}
}

// TestTrickledGETBodyEndsWithinRequestTimeouts sends a scrape that
// declares a small body and then trickles it, a byte every 200 ms. The
// proxy has no use for a body on GET; the connection must end within the
// request timeouts (read_header_timeout 1s plus idle_timeout 2s), as every
// other slow client's does, rather than hold a goroutine for as long as
// the client keeps trickling.
func TestTrickledGETBodyEndsWithinRequestTimeouts(t *testing.T) {
	t.Parallel()
	env := startHostile(t, "")
	cases := []connCase{
		{"Content-Length", trickledBody("Content-Length: 100000\r\n\r\n"), 3 * time.Second},
		{"chunked", trickledBody("Transfer-Encoding: chunked\r\n\r\n186a0\r\n"),
			3 * time.Second},
	}
	ended := watchConns(t, env, cases)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.bound + timeoutSlack
			if e := ended[i]; !e.ended || e.took > limit {
				t.Errorf("HANG: the connection lasted %v (ended %v) while the client "+
					"trickled its GET body, want at most %v", e.took.Round(time.Millisecond),
					e.ended, limit)
			}
		})
	}
}

// trickledBody returns a start function that sends a scrape's head, with
// head ending it, and then a body byte every 200 ms until the server ends
// the connection.
func trickledBody(head string) func(*testing.T, *hostileEnv) (net.Conn, time.Time) {
	return func(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
		c := dialMetrics(t, env.rp.metrics, env.pki, "http/1.1")
		start := time.Now()
		fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n%s", head)
		go func() {
			for {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
		return c, start
	}
}

// TestHTTP2PrefaceWithinReadHeaderTimeout negotiates h2 and then sends
// nothing, not even the connection preface: the HTTP/2 counterpart of a
// client that never sends its request line. The connection must end
// within read_header_timeout (1s here), as the HTTP/1.1 one does.
func TestHTTP2PrefaceWithinReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	env := startHostile(t, "")
	silent := func(t *testing.T, env *hostileEnv) (net.Conn, time.Time) {
		return dialMetrics(t, env.rp.metrics, env.pki, "h2"), time.Now()
	}
	e := watchConns(t, env, []connCase{{"h2 silent", silent, time.Second}})[0]
	if limit := time.Second + timeoutSlack; !e.ended || e.took > limit {
		t.Errorf("HANG: an h2 connection that sent no preface lasted %v (ended %v), "+
			"want at most read_header_timeout + slack = %v", e.took.Round(time.Millisecond),
			e.ended, limit)
	}
}

// TestHostileSlowReader reads a large scrape one byte a second. The proxy
// gives up writing within the scrape deadline (upstream.timeout 500ms here)
// plus five seconds, and the client then sees a broken transfer, never a
// clean end. Over HTTP/2 the client grants no flow-control window beyond
// the first 64 KiB.
func TestHostileSlowReader(t *testing.T) {
	body := bytes.Repeat([]byte("slow_reader_sample 1\n"), (16<<20)/21)
	up := newFaultUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	})
	pki := newTestPKI(t)
	cfg := strings.Replace(baseConfig(pki, up.URL(), hostileConfig), `timeout = "5s"`,
		`timeout = "500ms"`, 1)
	rp := startProxy(t, pki.dir, cfg)
	base := settledGoroutines()
	limit := 500*time.Millisecond + 5*time.Second + timeoutSlack

	t.Run("cases", func(t *testing.T) {
		t.Run("HTTP/1.1", func(t *testing.T) {
			t.Parallel()
			c := dialMetrics(t, rp.metrics, pki, "http/1.1")
			start := time.Now()
			fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\n\r\n")
			_ = c.SetReadDeadline(start.Add(limit + 10*time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the response head: %v", err)
			}
			defer resp.Body.Close()
			one := make([]byte, 1)
			for time.Since(start) < limit && !strings.Contains(rp.logs.String(),
				"scrape failed") {
				if _, err := resp.Body.Read(one); err != nil {
					t.Fatalf("read: %v", err)
				}
				time.Sleep(time.Second)
			}
			took := time.Since(start)
			if took >= limit {
				t.Fatalf("HANG: the proxy still wrote to a slow reader after %v", took)
			}
			// Now drain fast: the body must end broken.
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil {
				t.Errorf("a cut scrape ended cleanly after %d more bytes", n)
			}
			t.Logf("gave up after %v; the client saw %v", took.Round(time.Millisecond), err)
		})
		t.Run("HTTP/2", func(t *testing.T) {
			t.Parallel()
			c := dialH2(t, rp.metrics, pki)
			c.noWindowUpdates = true
			start := time.Now()
			id, err := c.open(getHeaders("/metrics"))
			if err != nil {
				t.Fatal(err)
			}
			r := c.await(limit+5*time.Second, id)[id]
			took := time.Since(start)
			if r.ended {
				t.Errorf("a stream the client stopped reading ended cleanly: %v", r)
			}
			if took > limit {
				t.Errorf("HANG: the stream lasted %v, want at most %v", took, limit)
			}
			t.Logf("stream ended after %v: %v", took.Round(time.Millisecond), r)
			c.conn.Close()
		})
	})
	up.waitIdle(t, 5*time.Second)
	waitGoroutines(t, base, 10*time.Second, up)
}

// TestHostileRenegotiation covers C26: a Go client willing to renegotiate
// scrapes normally over TLS 1.2, since the server never asks; openssl
// s_client asking for renegotiation is refused, and the proxy serves the
// next scrape.
func TestHostileRenegotiation(t *testing.T) {
	t.Parallel()
	env := startHostile(t, "")

	t.Run("C26a Go client with renegotiation allowed", func(t *testing.T) {
		cfg := env.pki.clientTLS("http/1.1")
		cfg.MaxVersion = tls.VersionTLS12
		cfg.Renegotiation = tls.RenegotiateFreelyAsClient
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := range 3 {
			status, _, err := get(t, c, "https://"+env.rp.metrics+"/metrics")
			if err != nil || status != http.StatusOK {
				t.Fatalf("scrape %d: %d %v", i, status, err)
			}
		}
	})

	t.Run("C26b openssl asks to renegotiate", func(t *testing.T) {
		openssl, err := exec.LookPath("openssl")
		if err != nil {
			t.Skip("openssl is not installed")
		}
		writeFile(t, env.pki.dir, "client.pem", env.pki.client.CertPEM(), 0o644)
		writeFile(t, env.pki.dir, "client-key.pem", env.pki.client.KeyPEM(), 0o600)
		before := len(env.up.requests())
		out := runOpenSSL(t, openssl, env, "R\n")
		// The server refuses: a no_renegotiation alert, or the connection
		// ends; either way s_client never completes a second handshake.
		t.Logf("s_client ends:\n%s", lastLines(out, 8))
		if !strings.Contains(out, "RENEGOTIATING") {
			t.Fatalf("s_client did not try to renegotiate:\n%s", out)
		}
		if !strings.Contains(out, "no renegotiation") && !strings.Contains(out, "alert") &&
			!strings.Contains(out, "closed") {
			t.Errorf("no sign of a refusal in s_client's output:\n%s", out)
		}
		noneSince(t, env.up, before, "a renegotiation attempt")
		checkScrapes(t, env.rp.metrics, env.pki)
	})
}

// runOpenSSL runs openssl s_client against the proxy over TLS 1.2 with
// the client certificate, feeding it input, and returns what it printed.
func runOpenSSL(t testing.TB, openssl string, env *hostileEnv, input string) string {
	t.Helper()
	cmd := exec.Command(openssl, "s_client", "-tls1_2", "-connect", env.rp.metrics,
		"-servername", "sidecar.test", "-CAfile", env.pki.dir+"/ca.pem",
		"-cert", env.pki.dir+"/client.pem", "-key", env.pki.dir+"/client-key.pem")
	// Let s_client finish its handshake before it reads the "R".
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(pw, input)
		time.Sleep(time.Second)
		pw.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("HANG: openssl s_client still connected after 15s")
	}
	return out.String()
}

// lastLines returns at most the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
