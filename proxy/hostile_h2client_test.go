package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is an HTTP/2 client connection driven frame by frame, so that a
// test can send what Go's client never would: any :path bytes, invalid
// pseudo-headers, streams reset at once, endless CONTINUATION frames.
// One goroutine at a time uses it.
type h2Conn struct {
	t     testing.TB
	conn  *tls.Conn
	bw    *bufio.Writer
	fr    *http2.Framer
	enc   *hpack.Encoder
	block bytes.Buffer
	next  uint32

	// settings are the server's SETTINGS from the connection preface.
	settings map[http2.SettingID]uint32
	// goaway is set once the server sent GOAWAY.
	goaway *http2.GoAwayFrame
	// noWindowUpdates stops the client from granting flow-control
	// window for the DATA it receives: a reader that never reads.
	noWindowUpdates bool
}

// h2Result is how the server ended one stream.
type h2Result struct {
	status  int           // :status of the response, 0 if none
	body    []byte        // DATA received
	ended   bool          // END_STREAM received
	reset   http2.ErrCode // the RST_STREAM code, if the stream was reset
	wasRST  bool
	connErr error // the connection failed before the stream ended
}

// refused reports whether the server turned the stream down at the
// protocol level rather than with an HTTP status.
func (r h2Result) refused() bool { return r.wasRST || r.connErr != nil && r.status == 0 }

func (r h2Result) String() string {
	switch {
	case r.wasRST:
		return "RST_STREAM " + r.reset.String()
	case r.connErr != nil && r.status == 0:
		return "connection ended: " + r.connErr.Error()
	}
	return fmt.Sprintf(":status %d, %d body bytes, ended %v", r.status, len(r.body), r.ended)
}

// dialH2 opens an HTTP/2 connection as an allowed client and exchanges
// the connection prefaces.
func dialH2(t testing.TB, addr string, pki *testPKI) *h2Conn {
	t.Helper()
	conn := dialMetrics(t, addr, pki, "h2")
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &h2Conn{t: t, conn: conn, bw: bufio.NewWriterSize(conn, 64<<10), next: 1,
		settings: map[http2.SettingID]uint32{}}
	c.fr = http2.NewFramer(c.bw, bufio.NewReader(conn))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.block)

	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	c.flush()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's preface: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = sf.ForeachSetting(func(s http2.Setting) error {
				c.settings[s.ID] = s.Val
				return nil
			})
			if err := c.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			c.flush()
			return c
		}
	}
}

func (c *h2Conn) flush() {
	if err := c.bw.Flush(); err != nil {
		c.t.Logf("h2 write: %v", err)
	}
}

// maxStreams is the server's SETTINGS_MAX_CONCURRENT_STREAMS.
func (c *h2Conn) maxStreams() int {
	v, ok := c.settings[http2.SettingMaxConcurrentStreams]
	if !ok {
		c.t.Fatal("the server sets no SETTINGS_MAX_CONCURRENT_STREAMS: streams are unbounded")
	}
	return int(v)
}

// getHeaders returns the header fields of a GET of path, as Go's client
// would send them.
func getHeaders(path string) []hpack.HeaderField {
	return []hpack.HeaderField{
		{Name: ":method", Value: "GET"},
		{Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "sidecar.test"},
		{Name: ":path", Value: path},
	}
}

// open starts a new stream with fields, unchecked, split into HEADERS and
// CONTINUATION frames of at most 16 KiB; the request has no body. It
// returns the stream's id and the write error, if any.
func (c *h2Conn) open(fields []hpack.HeaderField) (uint32, error) {
	id := c.next
	c.next += 2
	c.block.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(f); err != nil {
			c.t.Fatal(err)
		}
	}
	return id, c.writeBlock(id, c.block.Bytes(), true)
}

func (c *h2Conn) writeBlock(id uint32, block []byte, endStream bool) error {
	const maxFrag = 16 << 10
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), maxFrag)]
		block = block[len(frag):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
				BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// await reads frames until every stream in ids has ended, or the
// connection fails, or within passes, and returns how each ended.
func (c *h2Conn) await(within time.Duration, ids ...uint32) map[uint32]*h2Result {
	res := make(map[uint32]*h2Result, len(ids))
	for _, id := range ids {
		res[id] = &h2Result{}
	}
	open := len(ids)
	deadline := time.Now().Add(within)
	for open > 0 {
		if time.Now().After(deadline) {
			c.t.Errorf("HANG: %d of %d streams still open after %v", open, len(ids), within)
			return res
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			for _, r := range res {
				if !r.ended && !r.wasRST && r.connErr == nil {
					r.connErr = err
				}
			}
			return res
		}
		open -= c.handle(f, res)
	}
	return res
}

// handle applies one frame from the server to res and answers what needs
// answering; it returns how many streams in res it ended.
func (c *h2Conn) handle(f http2.Frame, res map[uint32]*h2Result) int {
	r := res[f.Header().StreamID]
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		if r != nil && r.status == 0 {
			r.status, _ = strconv.Atoi(f.PseudoValue("status"))
		}
		if r != nil && f.StreamEnded() {
			r.ended = true
			return 1
		}
	case *http2.DataFrame:
		if n := len(f.Data()); n > 0 && !c.noWindowUpdates {
			// Keep the windows open: these tests are not about flow control.
			_ = c.fr.WriteWindowUpdate(0, uint32(n))
			_ = c.fr.WriteWindowUpdate(f.StreamID, uint32(n))
			c.flush()
		}
		if r != nil {
			r.body = append(r.body, f.Data()...)
			if f.StreamEnded() {
				r.ended = true
				return 1
			}
		}
	case *http2.RSTStreamFrame:
		if r != nil && !r.ended && !r.wasRST {
			r.wasRST, r.reset = true, f.ErrCode
			return 1
		}
	case *http2.GoAwayFrame:
		// Streams above the last one the server processed never will be;
		// after a connection error, none will.
		c.goaway = f
		ended := 0
		for id, r := range res {
			if (id > f.LastStreamID || f.ErrCode != http2.ErrCodeNo) && !r.ended && !r.wasRST &&
				r.connErr == nil {
				r.connErr = fmt.Errorf("GOAWAY %v after stream %d", f.ErrCode, f.LastStreamID)
				ended++
			}
		}
		return ended
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = c.fr.WritePing(true, f.Data)
			c.flush()
		}
	case *http2.SettingsFrame:
		if !f.IsAck() {
			_ = c.fr.WriteSettingsAck()
			c.flush()
		}
	}
	return 0
}

// roundTrip sends fields on a new stream and waits for its end.
func (c *h2Conn) roundTrip(fields []hpack.HeaderField) h2Result {
	id, err := c.open(fields)
	if err != nil {
		return h2Result{connErr: err}
	}
	return *c.await(10*time.Second, id)[id]
}

// checkScrapes fails the test unless a fresh allowed client can scrape
// over HTTP/1.1 and HTTP/2.
func checkScrapes(t testing.TB, addr string, pki *testPKI) {
	t.Helper()
	for _, proto := range []string{"http/1.1", "h2"} {
		a := scrapeStatus(t, addr, pki, proto)
		if a != http.StatusOK {
			t.Errorf("a valid %s scrape afterwards got %d, want 200", proto, a)
		}
	}
}

// scrapeStatus scrapes /metrics once over a new connection speaking proto
// and returns the status, 0 on failure.
func scrapeStatus(t testing.TB, addr string, pki *testPKI, proto string) int {
	t.Helper()
	if proto == "h2" {
		c := dialH2(t, addr, pki)
		defer c.conn.Close()
		return c.roundTrip(getHeaders("/metrics")).status
	}
	a := sendRaw(t, addr, pki, "GET",
		[]byte("GET /metrics HTTP/1.1\r\nHost: sidecar.test\r\nConnection: close\r\n\r\n"))
	defer a.conn.Close()
	return a.status()
}
