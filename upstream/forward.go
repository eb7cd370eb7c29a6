package upstream

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// ScrapeTimeoutHeader is the header in which Prometheus sends the scrape's
// timeout, in seconds.
const ScrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds"

// Failure names what went wrong on the way to the daemon. The values are
// stable: they are logged and used as metric labels.
type Failure string

// The ways a forwarded scrape can fail.
const (
	// FailureDial: the daemon could not be reached (refused, no socket).
	FailureDial Failure = "dial"
	// FailureTimeout: the daemon did not answer within the deadline.
	FailureTimeout Failure = "timeout"
	// FailureProtocol: the daemon's answer was not valid HTTP, or the
	// connection broke before the response headers.
	FailureProtocol Failure = "protocol"
	// FailureBodyCopy: the response body broke off after its headers were
	// sent on; the scraper's response was cut.
	FailureBodyCopy Failure = "body_copy"
	// FailureCanceled: the scraper went away first.
	FailureCanceled Failure = "canceled"
)

// Options configures a [Forwarder].
type Options struct {
	// Address is where the daemon's diag server listens.
	Address Address
	// Path is the fixed path every scrape is forwarded to.
	Path string
	// Timeout bounds a scrape that names no timeout of its own.
	Timeout time.Duration
	// MaxTimeout bounds the timeout a scraper may ask for.
	MaxTimeout time.Duration
	// DialTimeout bounds connecting to the daemon; zero means 5s.
	DialTimeout time.Duration
}

// writeSlack is how long past the scrape's deadline the last bytes may take
// to reach the scraper.
const writeSlack = 5 * time.Second

// Forwarder sends scrapes to the daemon's metrics path and streams the
// answers back. It is safe for concurrent use.
type Forwarder struct {
	host       string
	path       string
	timeout    time.Duration
	maxTimeout time.Duration
	client     *client
	transport  *http.Transport
}

// NewForwarder returns a Forwarder for o.
func NewForwarder(o Options) *Forwarder {
	return &Forwarder{
		host:       o.Address.Host,
		path:       o.Path,
		timeout:    o.Timeout,
		maxTimeout: o.MaxTimeout,
		client:     newClient(o.Address, dialTimeout(o.DialTimeout)),
		transport:  NewTransport(o.Address, o.DialTimeout),
	}
}

func dialTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return 5 * time.Second
	}
	return d
}

// NewTransport returns a transport that sends every request to a, whatever
// host its URL names.
func NewTransport(a Address, timeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout(timeout), KeepAlive: 15 * time.Second}
	network, addr := a.Network, a.Addr

	return &http.Transport{
		// Never consult HTTP_PROXY and friends: the daemon is local, and a
		// proxy from the environment would carry the metrics off the
		// machine in clear text.
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},

		// Pass Accept-Encoding through and never decompress: the scraper
		// negotiated the encoding with the daemon, not with us.
		DisableCompression: true,

		MaxIdleConnsPerHost:    64,
		ReadBufferSize:         copyBufSize,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Transport returns a transport to the daemon for requests other than
// scrapes (the diag listener, readiness probes).
func (f *Forwarder) Transport() *http.Transport { return f.transport }

// Close drops idle connections to the daemon.
func (f *Forwarder) Close() {
	f.client.closeIdle()
	f.transport.CloseIdleConnections()
}

// Result reports how one forwarded scrape went.
type Result struct {
	// Status is the HTTP status sent to the scraper; 0 if none was sent.
	Status int
	// Bytes counts the response body bytes sent to the scraper.
	Bytes int64
	// Failure is empty on success.
	Failure Failure
	// Err holds the detail of a failure, for the log.
	Err error
	// Aborted means the response was cut after its headers went out. The
	// caller must abort the response (panic with http.ErrAbortHandler), so
	// that the scraper sees a broken transfer rather than a short body.
	Aborted bool
}

// Forward sends r to the daemon's metrics path with rawQuery as its query
// and writes the daemon's answer to w. The request's own URL is never
// used: the caller has already decided that it names the metrics path.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, rawQuery string,
	forceQuery bool) Result {
	d := f.deadline(r.Header)
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()

	// The context bounds reading from the daemon; this bounds writing to
	// the scraper, so that a client that stops reading cannot hold the
	// request open forever. The deadline is lifted afterwards because
	// net/http leaves it on the connection for the next request.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(d + writeSlack))
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()

	rb := reqPool.Get().(*[]byte)
	*rb = appendRequest((*rb)[:0], r.Method, f.host, f.path, rawQuery, forceQuery, r.Header)
	resp, err := f.client.do(ctx, *rb, r.Method)
	reqPool.Put(rb)
	if err != nil {
		return f.fail(w, r, classify(ctx, r.Context(), err), err)
	}
	defer resp.Body.Close()

	copyHeaders(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	res := Result{Status: resp.StatusCode}
	if r.Method == http.MethodHead {
		return res
	}

	var toScraper bool
	res.Bytes, toScraper, err = copyBody(w, resp.Body)
	if err != nil {
		res.Failure = copyFailure(ctx, r.Context(), err, toScraper)
		res.Err = err
		res.Aborted = true
	}
	return res
}

// copyFailure classifies a body copy that broke off. A failed write to the
// scraper cancels its context in net/http, so the side that failed is
// judged first: a scraper too slow to take the body before the write
// deadline is a timeout, not a scraper that went away.
func copyFailure(ctx, clientCtx context.Context, err error, toScraper bool) Failure {
	deadline := errors.Is(err, os.ErrDeadlineExceeded)
	switch {
	case toScraper && deadline:
		return FailureTimeout
	case toScraper, clientCtx.Err() != nil:
		return FailureCanceled
	case deadline || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return FailureTimeout
	}
	return FailureBodyCopy
}

// reqPool holds the buffers requests to the daemon are written in.
var reqPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// deadline returns how long the daemon may take: the scraper's own timeout
// when it sends a sensible one, capped at the maximum, else the default.
func (f *Forwarder) deadline(h http.Header) time.Duration {
	v := h.Get(ScrapeTimeoutHeader)
	if v == "" {
		return f.timeout
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || !(secs > 0) || math.IsInf(secs, 0) {
		return f.timeout
	}

	d := maxDeadline
	if secs < maxDeadline.Seconds() {
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		// Below a nanosecond: not a timeout anyone meant.
		return f.timeout
	}
	if f.maxTimeout > 0 && d > f.maxTimeout {
		d = f.maxTimeout
	}
	return d
}

// maxDeadline bounds any deadline, so that an absurd header cannot
// overflow time.Duration even without a configured maximum.
const maxDeadline = 24 * time.Hour

// classify maps a round-trip error to a Failure. ctx is the upstream
// request's context, clientCtx the scraper's.
func classify(ctx, clientCtx context.Context, err error) Failure {
	if clientCtx.Err() != nil {
		return FailureCanceled
	}
	// The connection's deadline is the context's, and either may be seen
	// to pass first.
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return FailureTimeout
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return FailureDial
	}
	return FailureProtocol
}

// fail answers the scraper for a scrape that never got a response from the
// daemon. The scraper gets a short text; the detail stays in Result.Err.
func (f *Forwarder) fail(w http.ResponseWriter, r *http.Request, kind Failure, err error) Result {
	res := Result{Failure: kind, Err: err}
	switch kind {
	case FailureCanceled:
		// Nobody is listening; writing would only fail.
		return res
	case FailureTimeout:
		res.Status = http.StatusGatewayTimeout
		http.Error(w, "upstream timed out", res.Status)
	case FailureDial:
		res.Status = http.StatusBadGateway
		http.Error(w, "upstream unavailable", res.Status)
	default:
		res.Status = http.StatusBadGateway
		http.Error(w, "upstream error", res.Status)
	}
	return res
}

// copyBufSize is the size of the buffer a scrape's body is copied through,
// and of the transport's read buffer. Reads this large let one read from
// the daemon span the many small chunks its HTTP server writes, and let one
// write to the scraper fill several TLS records; both cut system calls,
// which dominate the cost of a scrape.
const copyBufSize = 128 << 10

// bufPool holds copy buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// flushLatency bounds how long body bytes may wait in the HTTP server's
// write buffer while the daemon is slow to send more. Flushing after every
// write instead would turn each chunk the daemon writes into extra, tiny
// TLS records and system calls.
const flushLatency = 50 * time.Millisecond

// copyBody streams src to w. Writes are flushed when the daemon pauses for
// flushLatency, so a slow daemon's output still reaches the scraper as it
// comes, and at the end by the HTTP server.
// It reports whether a failure was in writing to the scraper.
func copyBody(w http.ResponseWriter, src io.Reader) (n int64, toScraper bool, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp

	lw := newLatencyWriter(w)
	defer lw.stop()
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := lw.write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, true, werr
			}
		}
		if rerr == io.EOF {
			return n, false, nil
		}
		if rerr != nil {
			return n, false, rerr
		}
	}
}

// latencyWriter writes to a ResponseWriter and flushes it once written
// bytes have waited flushLatency. The timer runs in its own goroutine, so
// writes and flushes take turns under mu.
type latencyWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	flusher http.Flusher
	timer   *time.Timer
	pending bool // bytes written since the last flush
	stopped bool
}

func newLatencyWriter(w http.ResponseWriter) *latencyWriter {
	lw := &latencyWriter{w: w}
	lw.flusher, _ = w.(http.Flusher)
	return lw
}

func (lw *latencyWriter) write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	n, err := lw.w.Write(p)
	if lw.flusher == nil || lw.pending {
		return n, err
	}
	lw.pending = true
	if lw.timer == nil {
		lw.timer = time.AfterFunc(flushLatency, lw.flush)
	} else {
		lw.timer.Reset(flushLatency)
	}
	return n, err
}

func (lw *latencyWriter) flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.stopped || !lw.pending {
		return
	}
	lw.pending = false
	lw.flusher.Flush()
}

// stop ends the timer; the HTTP server flushes what is left when the
// handler returns.
func (lw *latencyWriter) stop() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.stopped = true
	if lw.timer != nil {
		lw.timer.Stop()
	}
}
