package proxy

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// logLimiter lets through at most burst log lines per interval and counts
// the rest, so that a flood of bad clients cannot flood the log; the next
// line let through says how many were held back.
type logLimiter struct {
	interval time.Duration
	burst    int

	mu         sync.Mutex
	start      time.Time
	used       int
	suppressed int
}

func newLogLimiter(interval time.Duration, burst int) *logLimiter {
	return &logLimiter{interval: interval, burst: burst}
}

// allow reports whether a line may be logged now, and how many lines were
// held back since the last one that was.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.interval {
		l.start, l.used = now, 0
	}
	if l.used >= l.burst {
		l.suppressed++
		return false, 0
	}
	l.used++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// firstRequestTimer closes a connection that sends no request within the
// header timeout of its start. net/http bounds this for HTTP/1.1 itself,
// but an HTTP/2 client that never sends its preface is held for a fixed
// 10 seconds, whatever read_header_timeout says: long enough to hold
// connection slots ten times longer than configured.
type firstRequestTimer struct {
	timeout time.Duration
	timers  sync.Map // net.Conn -> *time.Timer, while the conn is new
}

func newFirstRequestTimer(timeout time.Duration) *firstRequestTimer {
	return &firstRequestTimer{timeout: timeout}
}

// connState is the http.Server.ConnState hook.
func (f *firstRequestTimer) connState(c net.Conn, st http.ConnState) {
	if st == http.StateNew {
		f.timers.Store(c, time.AfterFunc(f.timeout, func() {
			if _, ok := f.timers.LoadAndDelete(c); ok {
				_ = c.Close()
			}
		}))
		return
	}
	if t, ok := f.timers.LoadAndDelete(c); ok {
		t.(*time.Timer).Stop()
	}
}
