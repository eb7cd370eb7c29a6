package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// Proxy is a configured mtls-metrics-proxy: its listeners, their servers,
// and the material they serve with.
type Proxy struct {
	cfg        *Config
	log        hclog.Logger
	certs      *certReloader // nil without mTLS
	fwd        *upstream.Forwarder
	metrics    *proxyMetrics
	inFlight   atomic.Int64
	upstreamOK atomic.Int64 // Unix nanoseconds of the daemon's last answer
	build      BuildInfo

	metricsListener atomic.Pointer[tlsListener] // set by Listen

	servers []*server
}

// server is one listener and the HTTP server on it.
type server struct {
	name     string
	addr     string
	http     *http.Server
	listener net.Listener
	wrap     func(net.Listener) net.Listener
	describe []any
}

// Option adjusts a Proxy built by [New].
type Option func(*Proxy)

// WithBuildInfo names the running build in the proxy's own metrics.
func WithBuildInfo(b BuildInfo) Option {
	return func(p *Proxy) { p.build = b }
}

// New builds a Proxy from cfg: it reads and checks every certificate file,
// so that all problems are known before anything listens. The error is a
// [*Problems] when files are at fault.
func New(cfg *Config, log hclog.Logger, opts ...Option) (*Proxy, error) {
	p := &Proxy{cfg: cfg, log: log, build: BuildInfo{Version: "dev", Revision: "unknown"}}
	for _, o := range opts {
		o(p)
	}
	p.fwd = upstream.NewForwarder(upstream.Options{
		Address:    cfg.Upstream.Address,
		Path:       cfg.Upstream.MetricsPath,
		Timeout:    cfg.Upstream.Timeout.Duration,
		MaxTimeout: cfg.Upstream.MaxTimeout.Duration,
	})

	ms := cfg.MetricsService
	if ms.Enabled && ms.MTLS {
		certs, err := newCertReloader(cfg, log.Named("certs"))
		if err != nil {
			return nil, err
		}
		p.certs = certs
	}

	p.metrics = newProxyMetrics(p, p.build)
	if ms.Enabled {
		p.servers = append(p.servers, p.metricsServer())
	}
	if cfg.Diag.ListenAddr != "" {
		p.servers = append(p.servers, p.diagServer())
	}
	if cfg.Health.ListenAddr != "" {
		p.servers = append(p.servers, p.healthServer())
	}
	return p, nil
}

// Warnings returns what is doubtful in the configuration and its
// certificates, one line each.
func (p *Proxy) Warnings() []string {
	w := append([]string(nil), p.cfg.Warnings...)
	if p.certs != nil {
		w = append(w, p.certs.Current().material.warnings...)
	}
	return w
}

// Reload re-reads the certificate files now, as on SIGHUP. On error the
// previous material stays in service.
func (p *Proxy) Reload() error {
	// Only certificate material is reloaded. Say so when the
	// configuration file has changed too, rather than let an operator
	// believe a new rule is in force.
	if data, err := os.ReadFile(p.cfg.File); err == nil && sha256.Sum256(data) != p.cfg.sum {
		p.log.Warn("the configuration file has changed; SIGHUP reloads certificates, "+
			"CAs and CRLs only: restart to apply the configuration", "file", p.cfg.File)
	}
	if p.certs == nil {
		return nil
	}
	return p.certs.Reload("SIGHUP", true)
}

func (p *Proxy) metricsServer() *server {
	ms := p.cfg.MetricsService
	log := p.log.Named("metrics")
	h := &scrapeHandler{
		rule:     policy.PathRule{Path: p.cfg.Upstream.MetricsPath},
		fwd:      p.fwd,
		log:      log,
		inFlight: &p.inFlight,
		identity: ms.TLS.Identity,
		metrics:  p.metrics,

		upstreamOK: &p.upstreamOK,
		refusals:   newLogLimiter(10*time.Second, 20),
	}
	if ms.OwnMetricsPath != "" {
		h.ownRule = policy.PathRule{Path: ms.OwnMetricsPath}
		h.own = p.metrics.handler(log)
	}
	s := &server{
		name: "metrics",
		addr: ms.ListenAddr,
		http: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: ms.ReadHeaderTimeout.Duration,
			IdleTimeout:       ms.IdleTimeout.Duration,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          stdLogger(log, hclog.Debug),
			// The proxy answers OPTIONS * itself, like every other
			// request that is not a scrape.
			DisableGeneralOptionsHandler: true,
		},
	}
	if p.certs == nil {
		s.describe = []any{"tls", false, "mtls", false}
		return s
	}

	h.current = p.certs.Current
	m := p.certs.Current().material
	s.describe = []any{"tls", true, "mtls", true, "keypairs", len(m.keypairs),
		"ca_files", len(m.cas), "cas", countCAs(m.cas), "crl_files", len(ms.CRLFiles),
		"identity_rules", !ms.TLS.Identity.Empty()}
	s.describe = append(s.describe, "max_connections", ms.MaxConnections)
	handshakeLog := newLogLimiter(10*time.Second, 20)
	limitLog := newLogLimiter(10*time.Second, 1)
	s.wrap = func(inner net.Listener) net.Listener {
		l := newTLSListener(inner, listenerOptions{
			current:          p.certs.Current,
			handshakeTimeout: ms.HandshakeTimeout.Duration,
			maxConns:         ms.MaxConnections,
			failed: func(remote net.Addr, err error) {
				p.metrics.handshakeFailed(logHandshakeFailure(log, handshakeLog, remote, err))
			},
			refused: func(remote net.Addr) {
				p.metrics.connectionsRefused.Inc()
				if ok, held := limitLog.allow(time.Now()); ok {
					log.Warn("connection limit reached, refusing connections",
						"max_connections", ms.MaxConnections, "remote_addr", remote.String(),
						"refused_since_last_line", held+1)
				}
			},
		})
		p.metricsListener.Store(l)
		s.http.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return withConnInfo(ctx, l.take(c))
		}
		return l
	}
	s.http.ConnState = newFirstRequestTimer(ms.ReadHeaderTimeout.Duration).connState
	s.http.HTTP2 = &http.HTTP2Config{
		// A scraper needs one stream at a time; Go's default of 250 only
		// gives a misbehaving client more to hold.
		MaxConcurrentStreams: 32,
		// Close connections whose peer stops answering pings.
		SendPingTimeout: time.Minute,
	}
	return s
}

func (p *Proxy) diagServer() *server {
	log := p.log.Named("diag")
	return &server{
		name: "diag",
		addr: p.cfg.Diag.ListenAddr,
		http: &http.Server{
			Handler:           newDiagHandler(p.cfg, p.fwd.Transport(), log),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          stdLogger(log, hclog.Debug),
		},
		describe: []any{"tls", false, "metrics_path_forwarded",
			!p.cfg.MetricsService.Enabled || p.cfg.Diag.KeepMetrics},
	}
}

func (p *Proxy) healthServer() *server {
	return &server{
		name: "health",
		addr: p.cfg.Health.ListenAddr,
		http: &http.Server{
			Handler:           &healthHandler{p: p},
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          stdLogger(p.log.Named("health"), hclog.Debug),
		},
		describe: []any{"tls", false},
	}
}

func countCAs(files []caFile) int {
	n := 0
	for _, f := range files {
		n += len(f.certs)
	}
	return n
}

// Listen opens every listener. On failure it closes those already open.
func (p *Proxy) Listen() error {
	for _, s := range p.servers {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			p.closeListeners()
			return fmt.Errorf("opening %s listener: %w", s.name, err)
		}
		if s.wrap != nil {
			l = s.wrap(l)
		}
		s.listener = l
	}
	return nil
}

func (p *Proxy) closeListeners() {
	for _, s := range p.servers {
		if s.listener != nil {
			_ = s.listener.Close()
			s.listener = nil
		}
	}
}

// Addr returns the address the named listener ("metrics" or "diag") is
// bound to, or nil before Listen or for a listener not configured.
func (p *Proxy) Addr(name string) net.Addr {
	for _, s := range p.servers {
		if s.name == name && s.listener != nil {
			return s.listener.Addr()
		}
	}
	return nil
}

// Serve serves on the open listeners until ctx is done, then shuts down
// gracefully: listeners close, idle connections close at once, and
// requests in flight get up to the shutdown timeout to finish.
func (p *Proxy) Serve(ctx context.Context) error {
	for _, w := range p.Warnings() {
		p.log.Warn(w)
	}
	if p.cfg.MetricsService.Enabled {
		p.log.Info("metrics service enabled", "path", p.cfg.Upstream.MetricsPath,
			"upstream", p.cfg.Upstream.Address.String())
	} else {
		p.log.Info("metrics service disabled: the diag listener forwards the metrics path")
	}
	go p.probeUpstream()
	if p.certs != nil {
		p.startCertificates(ctx)
	}

	errc := make(chan error, len(p.servers))
	for _, s := range p.servers {
		p.log.Info("listening", append([]any{"listener", s.name,
			"addr", s.listener.Addr().String()}, s.describe...)...)
		go func() {
			if err := s.http.Serve(s.listener); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener: %w", s.name, err)
			}
		}()
	}

	var serveErr error
	select {
	case <-ctx.Done():
		p.log.Info("shutting down", "in_flight", p.inFlight.Load(),
			"grace", p.cfg.ShutdownTimeout.String())
	case serveErr = <-errc:
		p.log.Error("listener failed, shutting down", "err", serveErr.Error())
	}
	p.shutdown()
	return serveErr
}

func (p *Proxy) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout.Duration)
	defer cancel()

	var wg sync.WaitGroup
	for _, s := range p.servers {
		wg.Go(func() {
			if err := s.http.Shutdown(ctx); err != nil {
				p.log.Warn("grace period over, cutting requests still in flight",
					"listener", s.name, "in_flight", p.inFlight.Load())
				_ = s.http.Close()
			}
		})
	}
	wg.Wait()

	p.fwd.Close()
	if p.certs != nil {
		p.certs.Current().certs.Stop()
	}
	p.log.Info("stopped")
}

// startCertificates logs the trust in effect, warns of what expires soon,
// and starts watching the files for changes.
func (p *Proxy) startCertificates(ctx context.Context) {
	ms := p.cfg.MetricsService
	for _, c := range allCAs(p.certs.Current().material.cas) {
		p.log.Info("trusting client CA", "subject", c.Subject.String(),
			"not_after", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if ms.TLS.Identity.Empty() {
		p.log.Info("no client identity rules: any certificate the CAs signed may scrape")
	}
	p.certs.mu.Lock()
	p.certs.checkExpiry(time.Now())
	p.certs.mu.Unlock()
	p.certs.watch(ctx)
}

// probeUpstream dials the daemon once at start, so that a wrong upstream
// address shows in the log before the first scrape fails on it.
func (p *Proxy) probeUpstream() {
	a := p.cfg.Upstream.Address
	c, err := net.DialTimeout(a.Network, a.Addr, 2*time.Second)
	if err != nil {
		p.log.Warn("upstream not reachable yet; scrapes get 502 until it is",
			"upstream", a.String(), "err", err.Error())
		return
	}
	_ = c.Close()
}

// Run is Listen then Serve.
func (p *Proxy) Run(ctx context.Context) error {
	if err := p.Listen(); err != nil {
		return err
	}
	return p.Serve(ctx)
}
