package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
)

// tlsListener accepts TCP connections and runs each TLS handshake in a
// goroutine of its own, handing the HTTP server only connections whose
// handshake finished. Doing the handshake here rather than in net/http
// gives the proxy the handshake's error as a value, so that a refused
// client is classified, counted and logged once with its peer certificate,
// and it keeps a slow or silent client from ever reaching the HTTP layer.
type tlsListener struct {
	inner   net.Listener
	current func() *snapshot
	timeout time.Duration
	failed  func(remote net.Addr, err error)

	// maxConns bounds the connections open at once, handshakes included;
	// refused is told of each one turned away.
	maxConns int64
	open     atomic.Int64
	refused  func(remote net.Addr)

	// handed maps each connection handed to the HTTP server to what it
	// was verified with, until the server's ConnContext takes it.
	handed sync.Map // *tls.Conn -> *connInfo

	ready     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	acceptErr error // set before done is closed
}

// listenerOptions configures a tlsListener.
type listenerOptions struct {
	current          func() *snapshot
	handshakeTimeout time.Duration
	maxConns         int
	failed           func(remote net.Addr, err error)
	refused          func(remote net.Addr)
}

func newTLSListener(inner net.Listener, o listenerOptions) *tlsListener {
	l := &tlsListener{
		inner:    inner,
		current:  o.current,
		timeout:  o.handshakeTimeout,
		failed:   o.failed,
		maxConns: int64(o.maxConns),
		refused:  o.refused,
		ready:    make(chan net.Conn),
		done:     make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

// Open returns how many connections are open, handshakes included.
func (l *tlsListener) Open() int64 { return l.open.Load() }

// Accept returns the next connection whose handshake succeeded.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.acceptErr
	}
}

// Close stops accepting. Handshakes in progress are abandoned.
func (l *tlsListener) Close() error {
	err := l.inner.Close()
	l.stop(net.ErrClosed)
	return err
}

// Addr is the listening address.
func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

func (l *tlsListener) stop(err error) {
	l.closeOnce.Do(func() {
		l.acceptErr = err
		close(l.done)
	})
}

func (l *tlsListener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait and retry, as
				// net/http does, rather than stop serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
					return
				}
			}
			l.stop(err)
			return
		}
		backoff = 0

		// Beyond the limit, close at once: cheaper for both sides than a
		// handshake, and it keeps a flood of connections from holding
		// goroutines and memory.
		if l.open.Add(1) > l.maxConns {
			l.open.Add(-1)
			_ = c.Close()
			l.refused(c.RemoteAddr())
			continue
		}
		go l.handshake(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (l *tlsListener) handshake(c net.Conn) {
	// One snapshot per connection: the handshake runs wholly under either
	// the old material or the new, never a mix.
	snap := l.current()
	cc := &coalescingConn{Conn: c, onClose: func() { l.open.Add(-1) }}
	tc := tls.Server(cc, snap.tls)
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	err := tc.Handshake()
	if err != nil {
		l.failed(c.RemoteAddr(), err)
		answerPlainHTTP(err)
		_ = cc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})

	cs := tc.ConnectionState()
	ci := newConnInfo(cs, snap.gen)
	if cs.NegotiatedProtocol != "h2" {
		cc.enable()
		ci.flush = cc.Flush
	}
	l.handed.Store(tc, ci)
	select {
	case l.ready <- tc:
	case <-l.done:
		l.handed.Delete(tc)
		_ = tc.Close()
	}
}

// take returns what c was verified with; the HTTP server's ConnContext
// calls it once per connection.
func (l *tlsListener) take(c net.Conn) *connInfo {
	v, ok := l.handed.LoadAndDelete(c)
	if !ok {
		return nil
	}
	return v.(*connInfo)
}

// answerPlainHTTP tells a client that spoke clear HTTP to the TLS port what
// went wrong, in HTTP, as net/http does, so that curl and Prometheus show a
// readable error instead of garbage.
func answerPlainHTTP(err error) {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil || !policy.LooksLikeHTTP(re.RecordHeader) {
		return
	}
	_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = re.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n" +
		"Client sent an HTTP request to an HTTPS server.\n"))
}
