package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// maxIdleConns bounds the keep-alive connections kept to the daemon.
	// An idle connection holds no buffer, so it is cheap to keep one for
	// each scraper a busy listener serves at once; fewer, and scrapes
	// beyond that many would each dial and close a connection.
	maxIdleConns = 1024
	// idleConnTimeout is how long an unused connection is kept.
	idleConnTimeout = 90 * time.Second
	// readBufSize is the read buffer of each connection to the daemon.
	readBufSize = 64 << 10
)

// aLongTimeAgo is a deadline that has passed; setting it unblocks reads and
// writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// client is the HTTP/1.1 client a Forwarder sends scrapes with. It does
// one thing, a GET or HEAD on a kept-alive connection to one address, and
// does it on the calling goroutine: net/http's Transport runs a read and a
// write goroutine per connection and hands each request across them, and
// for a scrape those hand-offs, and the scheduler spinning they cause,
// cost more than the forwarding itself. Responses are read with
// http.ReadResponse, so the parsing and framing (chunked, Content-Length,
// HEAD, close-delimited) are net/http's own.
type client struct {
	network, addr string
	dialer        net.Dialer

	mu   sync.Mutex // guards idle
	idle []*upConn  // most recently used last
}

// upConn is one connection to the daemon. Its read buffer is taken from a
// pool for each exchange and given back when the response is done.
type upConn struct {
	net.Conn
	br        *bufio.Reader
	idleSince time.Time
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

func (c *upConn) releaseReader() {
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
}

// Close closes the connection and gives back its buffer.
func (c *upConn) Close() error {
	c.releaseReader()
	return c.Conn.Close()
}

func newClient(a Address, dialTimeout time.Duration) *client {
	return &client{
		network: a.Network,
		addr:    a.Addr,
		dialer:  net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second},
	}
}

// do sends req (a whole GET or HEAD request, headers and all) and returns
// the response. The caller must close the response body; that returns the
// connection to the pool if the body was read to its end.
func (cl *client) do(ctx context.Context, req []byte, method string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := cl.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := cl.exchange(ctx, c, req, method)
		if err == nil {
			return resp, nil
		}
		_ = c.Close()

		// A kept-alive connection the daemon closed while it sat idle
		// fails before any answer. GET and HEAD change nothing, so they
		// are sent once more, on a new connection.
		if !reused || attempt > 0 || ctx.Err() != nil || !staleConn(err) {
			return nil, err
		}
	}
}

// staleConn reports whether err is what a connection the peer had closed
// gives on first use.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || isConnReset(err)
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout() && op.Op != "dial"
}

// conn returns an idle connection, or dials a new one.
func (cl *client) conn(ctx context.Context) (*upConn, bool, error) {
	now := time.Now()
	cl.mu.Lock()
	for len(cl.idle) > 0 {
		c := cl.idle[len(cl.idle)-1]
		cl.idle = cl.idle[:len(cl.idle)-1]
		if now.Sub(c.idleSince) < idleConnTimeout {
			cl.mu.Unlock()
			return c, true, nil
		}
		_ = c.Close()
	}
	cl.mu.Unlock()

	nc, err := cl.dialer.DialContext(ctx, cl.network, cl.addr)
	if err != nil {
		return nil, false, err
	}
	return &upConn{Conn: nc}, false, nil
}

// put keeps c for the next request.
func (cl *client) put(c *upConn) {
	c.idleSince = time.Now()
	cl.mu.Lock()
	if len(cl.idle) < maxIdleConns {
		cl.idle = append(cl.idle, c)
		c = nil
	}
	cl.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// closeIdle closes every idle connection.
func (cl *client) closeIdle() {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle = nil
	cl.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// exchange writes req on c and reads the response head. The connection's
// deadline follows ctx: its deadline bounds every read and write, and its
// cancellation (the scraper went away) unblocks them at once.
func (cl *client) exchange(ctx context.Context, c *upConn, req []byte,
	method string) (*http.Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })

	if _, err := c.Write(req); err != nil {
		stop()
		return nil, err
	}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.Conn)
	resp, err := readFinalResponse(c.br, method)
	if err != nil {
		stop()
		return nil, err
	}
	resp.Body = &upBody{ReadCloser: resp.Body, cl: cl, c: c, stop: stop,
		keep: !resp.Close, eof: resp.Body == http.NoBody}
	return resp, nil
}

// readFinalResponse reads the response to a request, skipping interim
// (1xx) responses such as 103 Early Hints, which a scraper has no use for.
func readFinalResponse(br *bufio.Reader, method string) (*http.Response, error) {
	for range 8 {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("the daemon switched protocols on a GET")
		case resp.StatusCode >= 200:
			return resp, nil
		}
	}
	return nil, errors.New("the daemon sent too many interim responses")
}

// upBody is a response body that hands its connection back to the pool
// when it was read to the end, and closes it otherwise.
type upBody struct {
	io.ReadCloser
	cl   *client
	c    *upConn
	stop func() bool // stops the context's hold on the deadline
	keep bool        // the daemon allows another request on the connection
	eof  bool
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *upBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.ReadCloser.Close()

	// If the context already fired, the connection's deadline is in the
	// past and it is of no more use.
	stopped := b.stop()
	if b.eof && b.keep && stopped && err == nil && b.c.br.Buffered() == 0 {
		if derr := b.c.SetDeadline(time.Time{}); derr == nil {
			b.c.releaseReader()
			b.cl.put(b.c)
			return nil
		}
	}
	_ = b.c.Close()
	return err
}
