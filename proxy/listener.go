package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// tlsListener accepts TCP connections and runs each TLS handshake in a
// goroutine of its own, handing the HTTP server only connections whose
// handshake finished. Doing the handshake here rather than in net/http
// gives the proxy the handshake's error as a value, so that a refused
// client is classified, counted and logged once with its peer certificate,
// and it keeps a slow or silent client from ever reaching the HTTP layer.
type tlsListener struct {
	inner   net.Listener
	config  *tls.Config
	timeout time.Duration
	failed  func(remote net.Addr, err error)

	ready     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	acceptErr error // set before done is closed
}

func newTLSListener(inner net.Listener, config *tls.Config, timeout time.Duration,
	failed func(net.Addr, error)) *tlsListener {
	l := &tlsListener{
		inner:   inner,
		config:  config,
		timeout: timeout,
		failed:  failed,
		ready:   make(chan net.Conn),
		done:    make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

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
		go l.handshake(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.config)
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	err := tc.Handshake()
	if err != nil {
		l.failed(c.RemoteAddr(), err)
		answerPlainHTTP(err)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})

	select {
	case l.ready <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// answerPlainHTTP tells a client that spoke clear HTTP to the TLS port what
// went wrong, in HTTP, as net/http does, so that curl and Prometheus show a
// readable error instead of garbage.
func answerPlainHTTP(err error) {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil {
		return
	}
	_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = re.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n" +
		"Client sent an HTTP request to an HTTPS server.\n"))
}
