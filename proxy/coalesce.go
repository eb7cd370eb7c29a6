package proxy

import (
	"net"
	"sync"
	"time"
)

// coalesceLimit is how many bytes of TLS records a coalescingConn holds
// before it writes them out anyway.
const coalesceLimit = 256 << 10

// coalescingConn sits under a TLS connection serving HTTP/1.1 and gathers
// the records of a response into few system calls. crypto/tls writes each
// record of at most 16 KiB with a system call of its own, and net/http's
// 4 KiB buffer splits a streamed body further; on a scrape of a few hundred
// KiB those calls, each of which also runs the receiving side of loopback
// or the NIC's queueing, are most of the proxy's cost.
//
// Held bytes go out when the server next reads from the connection (it has
// finished a response and waits for the next request), when it closes it
// or changes its deadlines, when more than coalesceLimit bytes are held,
// and when the handler flushes (Flush). An HTTP/1.1 server always reads or closes after a
// response, so nothing is held for long. HTTP/2 interleaves reads and
// writes on separate goroutines and does its own framing, so for it
// coalescing stays off.
type coalescingConn struct {
	net.Conn

	mu  sync.Mutex // guards on, buf and writes to Conn
	on  bool
	buf []byte
	err error     // the first write error, returned to every later write
	wdl time.Time // the write deadline in force

	closeOnce sync.Once
	onClose   func() // called once, when the connection closes
}

func (c *coalescingConn) enable() {
	c.mu.Lock()
	c.on = true
	c.mu.Unlock()
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.on {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = (*coalescePool.Get().(*[]byte))[:0]
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= coalesceLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes out what is held.
func (c *coalescingConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *coalescingConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	_, err := c.Conn.Write(c.buf)
	// An idle connection holds no buffer: with thousands of kept-alive
	// scrapers, that is most of the memory they would otherwise cost.
	if cap(c.buf) <= 2*coalesceLimit {
		b := c.buf[:0]
		coalescePool.Put(&b)
	}
	c.buf = nil
	c.err = err
	return err
}

// coalescePool holds the buffers of coalescingConns between responses.
var coalescePool = sync.Pool{New: func() any {
	b := make([]byte, 0, coalesceLimit+16<<10)
	return &b
}}

// SetWriteDeadline flushes first when the new deadline is earlier than
// the one in force: crypto/tls sets a deadline of now right after its
// close_notify alert, so that nothing more is written, and what is held
// must go out before that. A deadline lifted or pushed out cannot fail the
// held bytes, so they stay for the next flush.
func (c *coalescingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	earlier := !t.IsZero() && (c.wdl.IsZero() || t.Before(c.wdl))
	c.wdl = t
	c.mu.Unlock()
	if earlier {
		_ = c.Flush()
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, flushing as SetWriteDeadline does.
func (c *coalescingConn) SetDeadline(t time.Time) error {
	if err := c.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(t)
}

// Read flushes first: a server that reads has answered what came before.
func (c *coalescingConn) Read(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *coalescingConn) Close() error {
	_ = c.Flush()
	err := c.Conn.Close()
	if c.onClose != nil {
		c.closeOnce.Do(c.onClose)
	}
	return err
}
