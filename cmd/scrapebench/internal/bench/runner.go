package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/procstat"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/serve"
)

// startTimeout bounds a server's or front's start, body generation included.
const startTimeout = 60 * time.Second

// runner carries one [Run], and only Run's goroutine touches it; its
// cleanup stops every child it started.
type runner struct {
	cfg   Config
	plan  *plan
	dir   string
	pki   pkiFiles
	proc  procstat.FS
	probe *http.Client
	bins  map[string]string // front name -> binary, for the fronts that run

	children []*child // every process started, in order

	upstreams map[sizeClass]*server
	instances map[string]map[sizeClass]*instance
	report    *Report
	seq       int // loads started, for their log names
	progress  int // measurements done
	total     int // measurements planned
	keepDir   bool
}

// server is one of scrapebench's own servers, running.
type server struct {
	child *child
	ready *serve.Ready
}

// instance is a front running before one upstream.
type instance struct {
	kind     *frontKind
	size     sizeClass
	url      string
	root     *child       // its process tree is the front
	upstream *child       // the daemon behind it; nil for none and direct
	ready    *serve.Ready // the bodies every scrape must get
	err      error        // why it could not start
}

// Run runs the bench described by cfg and returns its report, after
// printing the table on cfg.Stdout and writing the JSON file. Every child
// process is stopped before it returns, also when ctx is canceled.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if !supported {
		return nil, fmt.Errorf("%w: scrapebench run reads /proc and needs Linux", ErrConfig)
	}
	p, err := newPlan(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	r := &runner{cfg: cfg, plan: p, upstreams: map[sizeClass]*server{},
		instances: map[string]map[sizeClass]*instance{}, bins: map[string]string{}}
	defer r.cleanup()
	if err := r.setup(); err != nil {
		return nil, err
	}

	if err := r.execute(ctx); err != nil {
		// Keep the logs of a failure, not of an interruption.
		r.keepDir = ctx.Err() == nil
		return nil, err
	}
	r.report.finish(r.plan)
	r.report.WriteTable(cfg.Stdout)
	if cfg.JSONPath != "" {
		if err := r.report.WriteJSON(cfg.JSONPath); err != nil {
			return r.report, err
		}
		fmt.Fprintf(cfg.Stderr, "raw results written to %s\n", cfg.JSONPath)
	}
	return r.report, nil
}

// setup makes the folder, the PKI and the probe client, and finds the
// fronts.
func (r *runner) setup() error {
	dir, err := os.MkdirTemp("", "scrapebench-")
	if err != nil {
		return fmt.Errorf("making the bench folder: %w", err)
	}
	r.dir = dir
	for _, sub := range []string{"logs", "pki"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("making the bench folder: %w", err)
		}
	}
	if r.pki, err = writePKI(filepath.Join(dir, "pki")); err != nil {
		return err
	}
	if r.probe, err = r.probeClient(); err != nil {
		return err
	}

	noFile, err := raiseNoFile()
	if err != nil {
		fmt.Fprintf(r.cfg.Stderr, "warning: %v; 1000 connections may fail\n", err)
	}
	r.report = newReport(r.plan, noFile)
	return r.findFronts()
}

// findFronts looks for every front's binary; a missing third-party front
// is skipped with the command that installs it.
func (r *runner) findFronts() error {
	for _, k := range r.plan.fronts {
		info := FrontInfo{Name: k.Name, Workers: k.workers(runtime.NumCPU()),
			UpstreamPool: k.pool}
		switch {
		case k.proxy:
			bin, err := filepath.Abs(r.cfg.ProxyBin)
			if err == nil {
				_, err = os.Stat(bin)
			}
			if err != nil {
				return fmt.Errorf("%w: the proxy binary %q: %w (run make build, or pass "+
					"--proxy-bin)", ErrConfig, r.cfg.ProxyBin, err)
			}
			r.bins[k.Name] = bin
		case k.program != "":
			bin, err := lookProgram(k.program)
			if err != nil {
				info.Skipped = "not installed; install it with: " + k.install
				fmt.Fprintf(r.cfg.Stderr, "skipping %s: %s\n", k.Name, info.Skipped)
				r.report.Fronts = append(r.report.Fronts, info)
				continue
			}
			r.bins[k.Name] = bin
		default:
			r.bins[k.Name] = r.cfg.Self
		}
		info.Version = k.version(r.bins[k.Name])
		r.report.Fronts = append(r.report.Fronts, info)
	}
	return nil
}

// running returns the fronts that were found, in table order.
func (r *runner) running() []*frontKind {
	var out []*frontKind
	for _, k := range r.plan.fronts {
		if _, ok := r.bins[k.Name]; ok {
			out = append(out, k)
		}
	}
	return out
}

// cleanup stops every child and removes the folder unless it must stay.
func (r *runner) cleanup() {
	r.stopAll()
	if r.dir == "" {
		return
	}
	if r.cfg.KeepTemp || r.keepDir {
		fmt.Fprintf(r.cfg.Stderr, "configurations and logs kept in %s\n", r.dir)
		return
	}
	_ = os.RemoveAll(r.dir)
}

// execute starts the upstreams and fronts, runs the rounds, then the
// memory workload.
func (r *runner) execute(ctx context.Context) error {
	sizes := map[sizeClass]bool{}
	for _, w := range r.plan.workloads {
		if !w.Memory {
			sizes[w.Size] = true
		}
	}
	fronts := r.running()

	for _, s := range []sizeClass{sizeSmall, sizeLarge} {
		if !sizes[s] {
			continue
		}
		if err := r.startUpstream(s, true); err != nil {
			return err
		}
		for i := range r.plan.workloads {
			if w := &r.plan.workloads[i]; w.Gzip && w.Size == s {
				w.GzipBytes = r.upstreams[s].ready.GzipBytes
				w.Label = w.label()
			}
		}
		for _, k := range fronts {
			r.startInstance(ctx, k, s, true)
		}
	}

	var timed []workload
	var memory *workload
	for _, w := range r.plan.workloads {
		if w.Memory {
			memory = &w
		} else {
			timed = append(timed, w)
		}
	}
	r.total = r.plan.rounds * len(timed) * len(fronts)
	if memory != nil {
		for _, k := range fronts {
			if k.forwards {
				r.total++
			}
		}
	}
	if err := r.rounds(ctx, timed, fronts); err != nil {
		return err
	}
	if memory != nil {
		return r.memory(ctx, *memory, fronts)
	}
	return nil
}

// rounds runs every timed workload against every front, round after
// round. The order of the fronts rotates from one workload and round to
// the next, so that none always runs first or right after the same one.
func (r *runner) rounds(ctx context.Context, timed []workload, fronts []*frontKind) error {
	for round := 1; round <= r.plan.rounds; round++ {
		for wi, w := range timed {
			for i := range fronts {
				k := fronts[(i+round+wi)%len(fronts)]
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				rec := r.measure(ctx, w, r.instances[k.Name][w.Size], round)
				r.report.Runs = append(r.report.Runs, rec)
				r.done(w, rec)
				sleep(ctx, r.plan.settle)
			}
		}
	}
	return nil
}

// done reports a measurement; a failed one keeps the logs for a look.
func (r *runner) done(w workload, rec RunRecord) {
	if !rec.ok() || rec.CPUError != "" {
		r.keepDir = true
	}
	r.printProgress(w, rec)
}

// startUpstream starts the daemon serving bodies of size s.
func (r *runner) startUpstream(s sizeClass, gzip bool) error {
	argv := []string{r.cfg.Self, "upstream", "--listen", "127.0.0.1:0",
		"--unix", filepath.Join(r.dir, "upstream-"+string(s)+".sock"),
		"--body", strconv.Itoa(r.plan.sizes[s])}
	if gzip {
		argv = append(argv, "--gzip")
	}
	c, ready, err := r.startServer("upstream-"+string(s), argv, startTimeout)
	if err != nil {
		return fmt.Errorf("starting the upstream: %w", err)
	}
	r.upstreams[s] = &server{child: c, ready: ready}
	return nil
}

// startInstance starts front k before the upstream of size s and waits
// until it serves; with check, a scrape through it must get the whole
// body. A front that fails is recorded, not fatal: its runs fail.
func (r *runner) startInstance(ctx context.Context, k *frontKind, s sizeClass,
	check bool) *instance {
	up := r.upstreams[s]
	inst := &instance{kind: k, size: s, ready: up.ready}
	if r.instances[k.Name] == nil {
		r.instances[k.Name] = map[sizeClass]*instance{}
	}
	r.instances[k.Name][s] = inst

	switch k.Name {
	case "none":
		inst.url, inst.root = "http://"+up.ready.Addr+serve.MetricsPath, up.child
		return inst
	case "direct":
		inst.err = r.startDirect(inst)
	default:
		inst.err = r.startFront(inst, up)
	}
	if inst.err == nil {
		inst.err = r.waitReady(ctx, inst, check)
	}
	if inst.err != nil {
		r.keepDir = true
		fmt.Fprintf(r.cfg.Stderr, "%s (%s body) failed to start: %v\n", k.Name, s, inst.err)
	}
	return inst
}

func (r *runner) startDirect(inst *instance) error {
	argv := []string{r.cfg.Self, "direct", "--listen", "127.0.0.1:0",
		"--body", strconv.Itoa(r.plan.sizes[inst.size]), "--gzip",
		"--ca", r.pki.CA, "--cert", r.pki.Cert, "--key", r.pki.Key}
	c, ready, err := r.startServer("direct-"+string(inst.size), argv, startTimeout)
	if c != nil {
		inst.root = c
	}
	if err != nil {
		return err
	}
	if ready.IdentityBytes != inst.ready.IdentityBytes || ready.GzipBytes != inst.ready.GzipBytes {
		return fmt.Errorf("direct serves %d/%d bytes, the upstream %d/%d", ready.IdentityBytes,
			ready.GzipBytes, inst.ready.IdentityBytes, inst.ready.GzipBytes)
	}
	inst.url = "https://" + ready.Addr + serve.MetricsPath
	return nil
}

// startFront writes the configuration of a forwarding front and starts it
// on a reserved port.
func (r *runner) startFront(inst *instance, up *server) error {
	k := inst.kind
	name := k.Name + "-" + string(inst.size)
	dir, err := os.MkdirTemp(r.dir, name+"-")
	if err != nil {
		return fmt.Errorf("making the folder of %s: %w", name, err)
	}
	addr, release, err := reservePort()
	if err != nil {
		return err
	}
	d := frontData{
		Listen: addr, Upstream: up.ready.Addr, CA: r.pki.CA, Cert: r.pki.Cert,
		Key: r.pki.Key, CertAndKey: r.pki.CertAndKey, PIDFile: filepath.Join(dir, "pid"),
		Temp: dir, Workers: runtime.NumCPU(), Pool: upstreamPool,
	}
	if k.unixUpstream {
		d.UpstreamUnix = up.ready.Unix
	}
	cfgPath, err := k.writeConfig(dir, d)
	if err != nil {
		release()
		return err
	}

	var env []string
	if k.env != nil {
		env = k.env(dir)
	}
	c, err := r.startChild(name, k.argv(r.bins[k.Name], cfgPath, dir), env)
	if err != nil {
		release()
		return err
	}
	c.release, c.forks = release, k.forks
	inst.root, inst.upstream = c, up.child
	inst.url = "https://" + addr + serve.MetricsPath
	return nil
}

// probeClient makes requests as the scraper would, with no keep-alive.
func (r *runner) probeClient() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(r.pki.ClientCert, r.pki.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("loading the client keypair: %w", err)
	}
	pem, err := os.ReadFile(r.pki.CA)
	if err != nil {
		return nil, fmt.Errorf("reading the CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{
		Proxy:              nil,
		DisableKeepAlives:  true,
		DisableCompression: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert},
			MinVersion: tls.VersionTLS12},
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// errNotReady is wrapped by the errors of a front that never served.
var errNotReady = errors.New("front not ready")

// waitReady polls inst until it answers any HTTP request over mTLS; with
// check, it then scrapes it once and wants the whole body.
func (r *runner) waitReady(ctx context.Context, inst *instance, check bool) error {
	base := inst.url[:len(inst.url)-len(serve.MetricsPath)]
	deadline := time.Now().Add(startTimeout)
	var last error
	for {
		if err := inst.root.alive(); err != nil {
			return err
		}
		resp, err := r.probe.Get(base + "/scrapebench-probe")
		if err == nil {
			resp.Body.Close()
			break
		}
		last = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%w within %v: %w%s", errNotReady, startTimeout, last,
				inst.root.logTail())
		}
		sleep(ctx, 50*time.Millisecond)
	}
	if !check {
		return nil
	}
	return r.checkScrape(inst)
}

// checkScrape scrapes inst once and wants a 200 with the whole body.
func (r *runner) checkScrape(inst *instance) error {
	resp, err := r.probe.Get(inst.url)
	if err != nil {
		return fmt.Errorf("first scrape: %w", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("first scrape: reading the body: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("first scrape: status %s%s", resp.Status, inst.root.logTail())
	case n != int64(inst.ready.IdentityBytes):
		return fmt.Errorf("first scrape: %d bytes, want %d", n, inst.ready.IdentityBytes)
	}
	return nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
