package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/load"
)

// Bounds on a load's phases beyond its own duration: the warm-up opens up
// to 1000 TLS connections on a shared machine, and scrapes in flight when
// the duration ends still complete.
const (
	warmTimeout  = 2 * time.Minute
	drainTimeout = 2 * time.Minute
	scrapeLimit  = time.Minute
)

// RunRecord is one load against one front.
type RunRecord struct {
	// Workload and Front name what ran; Round counts from 1.
	Workload string `json:"workload"`
	Front    string `json:"front"`
	Round    int    `json:"round"`
	// Error says why the run failed; its other fields may then be empty.
	Error string `json:"error,omitempty"`
	// Load is what the scraper reported.
	Load *load.Result `json:"load,omitempty"`
	// FrontCPUSeconds is the CPU time of the front's process tree over the
	// timed part, nil when it could not be measured (CPUError says why).
	FrontCPUSeconds *float64 `json:"front_cpu_s"`
	// FrontProcesses is the size of the front's process tree.
	FrontProcesses int `json:"front_processes,omitempty"`
	// UpstreamCPUSeconds is the daemon's CPU time over the timed part, for
	// the fronts with an upstream hop.
	UpstreamCPUSeconds *float64 `json:"upstream_cpu_s"`
	// CPUError says why a CPU time is missing.
	CPUError string `json:"cpu_error,omitempty"`
	// FrontRSSKiB is the resident memory of the front's process tree when
	// the load's last scrape is done and its connections are still open;
	// nil when it could not be read.
	FrontRSSKiB *int64 `json:"front_rss_kib"`
}

// ok reports whether the load ran to its end.
func (rec *RunRecord) ok() bool { return rec.Error == "" && rec.Load != nil }

// cpuSample is the CPU time of an instance's processes at one moment, and
// the front's resident memory.
type cpuSample struct {
	front, upstream time.Duration
	procs           int
	rssKiB          *int64
	err             error
}

func (r *runner) sample(inst *instance) cpuSample {
	var s cpuSample
	s.front, s.procs, s.err = r.proc.TreeCPU(inst.root.pid())
	if s.err == nil && inst.upstream != nil {
		s.upstream, _, s.err = r.proc.TreeCPU(inst.upstream.pid())
	}
	if m, err := r.proc.TreeMemory(inst.root.pid()); err == nil {
		s.rssKiB = &m.RSSKiB
	}
	return s
}

// measure runs workload w against inst: it starts a load process, lets it
// warm up, reads the fronts' CPU time, lets it run, and reads the CPU time
// again once its last scrape is done.
func (r *runner) measure(ctx context.Context, w workload, inst *instance, round int) RunRecord {
	rec := RunRecord{Workload: w.ID, Front: inst.kind.Name, Round: round}
	if inst.err != nil {
		rec.Error = "front did not start: " + inst.err.Error()
		return rec
	}
	if err := inst.root.alive(); err != nil {
		rec.Error = err.Error()
		return rec
	}
	args, err := r.loadArgs(w, inst)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}

	r.seq++
	c, err := r.prepareChild(fmt.Sprintf("load-%03d-%s-%s", r.seq, w.ID, inst.kind.Name), args,
		nil)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	stdin, err1 := c.cmd.StdinPipe()
	stdout, err2 := c.cmd.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		c.logFile.Close()
		rec.Error = "piping to the load: " + err.Error()
		return rec
	}
	if err := r.launch(c); err != nil {
		rec.Error = err.Error()
		return rec
	}
	defer c.stop()

	lines := readLines(stdout)
	before, after, res, err := r.drive(ctx, w, inst, c, stdin, lines)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	rec.Load = res
	rec.FrontRSSKiB = after.rssKiB
	r.cpuDelta(&rec, before, after)
	return rec
}

// drive takes a started load through its phases and returns the CPU
// samples around the timed part and the load's result.
func (r *runner) drive(ctx context.Context, w workload, inst *instance, c *child,
	stdin io.WriteCloser, lines <-chan string) (before, after cpuSample, res *load.Result,
	err error) {
	line, err := waitLine(ctx, c, lines, warmTimeout)
	if err != nil {
		return before, after, nil, fmt.Errorf("load warm-up: %w", err)
	}
	if line != "ready" {
		return before, after, nil, fmt.Errorf("load warm-up: unexpected line %q", line)
	}

	before = r.sample(inst)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return before, after, nil, fmt.Errorf("starting the load: %w", err)
	}
	line, err = waitLine(ctx, c, lines, w.Duration+drainTimeout)
	after = r.sample(inst)
	if err != nil {
		return before, after, nil, fmt.Errorf("load: %w", err)
	}

	res = &load.Result{}
	if err := json.Unmarshal([]byte(line), res); err != nil {
		return before, after, nil, fmt.Errorf("reading the load's result %q: %w", line, err)
	}
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		return before, after, nil, fmt.Errorf("load: still running after its result")
	}
	if c.waitErr != nil {
		return before, after, nil, fmt.Errorf("load: %w%s", c.waitErr, c.logTail())
	}
	return before, after, res, nil
}

// cpuDelta fills rec's CPU times from two samples, or says why not.
func (r *runner) cpuDelta(rec *RunRecord, before, after cpuSample) {
	switch {
	case before.err != nil:
		rec.CPUError = "before the load: " + before.err.Error()
	case after.err != nil:
		rec.CPUError = "after the load: " + after.err.Error()
	case after.front < before.front || after.upstream < before.upstream:
		// A process of the tree exited without being reaped by another.
		rec.CPUError = "CPU time went backwards: a process of the front exited"
	default:
		f := (after.front - before.front).Seconds()
		rec.FrontCPUSeconds, rec.FrontProcesses = &f, after.procs
		if rec.Front != "none" && rec.Front != "direct" {
			u := (after.upstream - before.upstream).Seconds()
			rec.UpstreamCPUSeconds = &u
		}
	}
}

// loadArgs is the command line of a load process for w against inst.
func (r *runner) loadArgs(w workload, inst *instance) ([]string, error) {
	expect := inst.ready.IdentityBytes
	if w.Gzip {
		expect = inst.ready.GzipBytes
		if expect == 0 {
			return nil, fmt.Errorf("the upstream offers no gzip body")
		}
	}
	args := []string{r.cfg.Self, "load", "--sync", "--url", inst.url,
		"--concurrency", strconv.Itoa(w.Concurrency), "--timeout", scrapeLimit.String(),
		"--expect-bytes", strconv.Itoa(expect)}
	if w.Count > 0 {
		args = append(args, "--count", strconv.Itoa(w.Count))
	} else {
		args = append(args, "--duration", w.Duration.String())
	}
	if w.NewConn {
		args = append(args, "--new-conn")
	}
	if w.Gzip {
		args = append(args, "--gzip")
	}
	if inst.kind.tls {
		args = append(args, "--ca", r.pki.CA, "--cert", r.pki.ClientCert,
			"--key", r.pki.ClientKey)
	}
	return args, nil
}

// readLines sends r's lines on the returned channel, closed at EOF.
func readLines(r io.Reader) <-chan string {
	out := make(chan string, 4)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	return out
}

// waitLine returns the next line, or an error when c ends first, the
// timeout passes, or ctx is done.
func waitLine(ctx context.Context, c *child, lines <-chan string,
	timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-lines:
		if !ok {
			select {
			case <-c.done:
			case <-time.After(stopGrace):
			}
			return "", fmt.Errorf("%s ended its output (%s)%s", c.name, c.state(), c.logTail())
		}
		return line, nil
	case <-t.C:
		return "", fmt.Errorf("%s: nothing within %v", c.name, timeout)
	case <-ctx.Done():
		return "", fmt.Errorf("interrupted: %w", ctx.Err())
	}
}
