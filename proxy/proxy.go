package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	cfg      *Config
	log      hclog.Logger
	material *material
	certs    *certStore
	tls      *tls.Config
	fwd      *upstream.Forwarder
	inFlight atomic.Int64

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

// New builds a Proxy from cfg: it reads and checks every certificate file,
// so that all problems are known before anything listens. The error is a
// [*Problems] when files are at fault.
func New(cfg *Config, log hclog.Logger) (*Proxy, error) {
	p := &Proxy{cfg: cfg, log: log}
	p.fwd = upstream.NewForwarder(upstream.Options{
		Address:    cfg.Upstream.Address,
		Path:       cfg.Upstream.MetricsPath,
		Timeout:    cfg.Upstream.Timeout.Duration,
		MaxTimeout: cfg.Upstream.MaxTimeout.Duration,
	})

	ms := cfg.MetricsService
	if ms.Enabled && ms.MTLS {
		probs := &Problems{File: cfg.File, lines: cfg.lines}
		p.material = loadMaterial(ms, probs, time.Now())
		if len(probs.List) > 0 {
			return nil, probs
		}
		certs, err := newCertStore(p.material.keypairs)
		if err != nil {
			return nil, fmt.Errorf("loading server keypairs: %w", err)
		}
		p.certs = certs
		p.tls, err = policy.ServerConfig(policy.ServerOptions{
			ClientCAs:      p.material.pool,
			GetCertificate: certs.GetCertificate,
		})
		if err != nil {
			certs.Stop()
			return nil, err
		}
	}

	if ms.Enabled {
		p.servers = append(p.servers, p.metricsServer())
	}
	if cfg.Diag.ListenAddr != "" {
		p.servers = append(p.servers, p.diagServer())
	}
	return p, nil
}

// Warnings returns what is doubtful in the configuration and its
// certificates, one line each.
func (p *Proxy) Warnings() []string {
	w := append([]string(nil), p.cfg.Warnings...)
	if p.material != nil {
		w = append(w, p.material.warnings...)
	}
	return w
}

func (p *Proxy) metricsServer() *server {
	ms := p.cfg.MetricsService
	log := p.log.Named("metrics")
	h := &scrapeHandler{
		rule:     policy.PathRule{Path: p.cfg.Upstream.MetricsPath},
		fwd:      p.fwd,
		log:      log,
		inFlight: &p.inFlight,
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
	if p.tls == nil {
		s.describe = []any{"tls", false, "mtls", false}
		return s
	}

	s.describe = []any{"tls", true, "mtls", true, "keypairs", len(p.material.keypairs),
		"ca_files", len(p.material.cas), "cas", countCAs(p.material.cas)}
	s.wrap = func(l net.Listener) net.Listener {
		return newTLSListener(l, p.tls, ms.HandshakeTimeout.Duration,
			func(remote net.Addr, err error) { logHandshakeFailure(log, remote, err) })
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
		describe: []any{"tls", false, "metrics_path_forwarded", !p.cfg.MetricsService.Enabled},
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
		p.certs.Stop()
	}
	p.log.Info("stopped")
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
