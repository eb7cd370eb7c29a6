package proxy

import (
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
