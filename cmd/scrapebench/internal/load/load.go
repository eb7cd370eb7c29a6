package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of failed scrapes, the keys of [Result.ErrorKinds].
const (
	kindTransport = "transport" // no answer, or the body broke off
	kindStatus    = "status"    // an answer other than 200
	kindLength    = "length"    // a body longer or shorter than expected
	kindEncoding  = "encoding"  // a Content-Encoding other than asked for
)

// readBuf is each worker's body buffer: large enough that reading a MiB
// costs the scraper few system calls, small enough for 1000 workers.
const readBuf = 32 << 10

// errorPause keeps a worker facing a dead front from spinning.
const errorPause = 10 * time.Millisecond

// Generator runs a load. Its workers are built by [New], warmed by
// [Generator.Warm] and timed by [Generator.Run]; it is not reusable.
type Generator struct {
	cfg     Config
	workers []*worker
	dials   atomic.Int64 // connections dialed so far, all workers
	started atomic.Int64 // scrapes started in the timed part, for Count
	first   *http.Response
}

// worker is one scraper with its own connection pool of one, which is how
// separate Prometheus servers, or targets, scrape. It is owned by one
// goroutine at a time.
type worker struct {
	client *http.Client
	req    *http.Request
	buf    []byte
	lat    []time.Duration
	res    Result
}

// New prepares cfg's workers without connecting.
func New(cfg Config) (*Generator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg}
	tr, err := g.transport()
	if err != nil {
		return nil, err
	}
	for range cfg.Concurrency {
		req, err := http.NewRequest(http.MethodGet, cfg.URL, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: url: %w", ErrConfig, err)
		}
		req.Header = g.header()
		g.workers = append(g.workers, &worker{
			client: &http.Client{Transport: tr.Clone(), Timeout: cfg.Timeout},
			req:    req,
			buf:    make([]byte, readBuf),
			res:    Result{ErrorKinds: map[string]int64{}},
		})
	}
	return g, nil
}

func (g *Generator) header() http.Header {
	enc := "identity"
	if g.cfg.Gzip {
		enc = "gzip"
	}
	return http.Header{
		"Accept":                              {Accept},
		"Accept-Encoding":                     {enc},
		"User-Agent":                          {UserAgent},
		"X-Prometheus-Scrape-Timeout-Seconds": {ScrapeTimeout},
	}
}

// transport is a worker's: HTTP/1.1 as Prometheus scrapes by default
// (enable_http2 is off in scrape configs), bodies left compressed, one
// idle connection, and every dial counted.
func (g *Generator) transport() (*http.Transport, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			g.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		DisableCompression:  true,
		DisableKeepAlives:   g.cfg.NewConn,
		MaxIdleConnsPerHost: 1,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if strings.HasPrefix(g.cfg.URL, "https://") {
		cfg, err := g.cfg.tlsConfig()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}

// Warm makes one scrape per worker, all at once, so that keep-alive
// connections are open and the front's upstream pool is primed before the
// timed part; any failure is returned. Nothing of it is counted.
func (g *Generator) Warm(ctx context.Context) error {
	errs := make([]error, len(g.workers))
	var wg sync.WaitGroup
	for i, w := range g.workers {
		wg.Go(func() {
			resp, _, kind, err := w.scrape(ctx, g.cfg)
			if err != nil {
				errs[i] = fmt.Errorf("warm-up scrape (%s): %w", kind, err)
			}
			if i == 0 {
				g.first = resp
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run scrapes until the duration is over or the count is reached, lets
// the scrapes in flight finish, and returns the merged result.
func (g *Generator) Run(ctx context.Context) Result {
	dials0 := g.dials.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range g.workers {
		wg.Go(func() { g.loop(ctx, w, start) })
	}
	wg.Wait()
	return g.merge(time.Since(start), g.dials.Load()-dials0)
}

// Close drops the workers' idle connections.
func (g *Generator) Close() {
	for _, w := range g.workers {
		w.client.CloseIdleConnections()
	}
}

func (g *Generator) loop(ctx context.Context, w *worker, start time.Time) {
	deadline := start.Add(g.cfg.Duration)
	for ctx.Err() == nil {
		if g.cfg.Count > 0 && g.started.Add(1) > int64(g.cfg.Count) {
			return
		}
		if g.cfg.Duration > 0 && time.Now().After(deadline) {
			return
		}
		t0 := time.Now()
		resp, n, kind, err := w.scrape(ctx, g.cfg)
		if err == nil {
			w.res.Scrapes++
			w.res.BodyBytes += n
			w.lat = append(w.lat, time.Since(t0))
			if resp.TLS != nil && resp.TLS.DidResume {
				w.res.Resumed++
			}
			continue
		}
		w.res.Errors++
		w.res.ErrorKinds[kind]++
		if w.res.FirstError == "" {
			w.res.FirstError = kind + ": " + err.Error()
		}
		select {
		case <-ctx.Done():
		case <-time.After(errorPause):
		}
	}
}

// scrape makes one scrape and checks it. It returns the response (its
// body read and closed), the body's length and, on failure, the kind of
// failure.
func (w *worker) scrape(ctx context.Context, cfg Config) (resp *http.Response, n int64,
	kind string, err error) {
	resp, err = w.client.Do(w.req.WithContext(ctx))
	if err != nil {
		return nil, 0, kindTransport, err
	}
	n, err = w.readBody(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp, n, kindTransport, fmt.Errorf("reading the body after %d bytes: %w", n, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp, n, kindStatus, fmt.Errorf("status %s", resp.Status)
	}

	wantEnc := ""
	if cfg.Gzip {
		wantEnc = "gzip"
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != wantEnc {
		return resp, n, kindEncoding, fmt.Errorf("Content-Encoding %q, want %q", enc, wantEnc)
	}
	want := cfg.ExpectBytes
	if want <= 0 {
		want = resp.ContentLength
	}
	if want >= 0 && n != want {
		return resp, n, kindLength, fmt.Errorf("body of %d bytes, want %d", n, want)
	}
	return resp, n, "", nil
}

func (w *worker) readBody(r io.Reader) (int64, error) {
	var n int64
	for {
		m, err := r.Read(w.buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
