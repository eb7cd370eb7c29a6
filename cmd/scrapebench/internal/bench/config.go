package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/body"
)

// ErrConfig is returned by [Run] for a configuration it cannot run.
var ErrConfig = errors.New("invalid bench configuration")

// Config is what [Run] runs.
type Config struct {
	// Quick makes a short run for smoke tests: one round, one-second loads,
	// small bodies, 100 concurrent connections instead of 1000.
	Quick bool
	// Rounds is how many times every (workload, front) pair runs; 0 means
	// 3, or 1 with Quick.
	Rounds int
	// Duration, when positive, replaces every timed load's duration.
	Duration time.Duration
	// Fronts lists the fronts to run by name; empty means all of them.
	Fronts []string
	// Workloads lists the workloads to run by id; empty means all.
	Workloads []string
	// ProxyBin is the mtls-metrics-proxy binary.
	ProxyBin string
	// Self is the scrapebench binary, started for the upstream, direct and
	// load roles.
	Self string
	// JSONPath receives the raw results; "" writes none.
	JSONPath string
	// KeepTemp keeps the folder of configurations and logs.
	KeepTemp bool
	// Stdout receives the table; Stderr the progress.
	Stdout, Stderr io.Writer
}

// sizeClass names a body size; its bytes depend on the mode.
type sizeClass string

const (
	sizeSmall sizeClass = "small"
	sizeLarge sizeClass = "large"
	sizeBig   sizeClass = "big"
)

// workload is one way of scraping.
type workload struct {
	ID          string        `json:"id"`
	Label       string        `json:"label"`
	Size        sizeClass     `json:"size"`
	Bytes       int           `json:"bytes"`
	GzipBytes   int           `json:"gzip_bytes,omitempty"` // known once the upstream runs
	Concurrency int           `json:"concurrency"`
	NewConn     bool          `json:"new_conn"`
	Gzip        bool          `json:"gzip"`
	Duration    time.Duration `json:"duration_ns"`
	Count       int           `json:"count,omitempty"`
	// Memory marks the workload run once per forwarding front on a fresh
	// process, for its idle and peak resident memory.
	Memory bool `json:"memory"`
}

// plan is a [Config] turned into what to run.
type plan struct {
	sizes     map[sizeClass]int
	workloads []workload
	fronts    []*frontKind
	rounds    int
	quick     bool
	// settle is the pause between loads, for the last one's connections
	// to close before the next measurement starts.
	settle time.Duration
	// idleWait is how long a fresh front idles before its RSS is read.
	idleWait time.Duration
}

// allWorkloadIDs lists the workloads in the order the table shows them.
var allWorkloadIDs = []string{"ka-small", "ka-large", "newconn", "gzip", "conns", "single",
	"memory"}

// newPlan checks cfg and expands it.
func newPlan(cfg Config) (*plan, error) {
	p := &plan{rounds: cfg.Rounds, quick: cfg.Quick, settle: 200 * time.Millisecond,
		idleWait: time.Second}
	p.sizes = map[sizeClass]int{sizeSmall: 100 << 10, sizeLarge: 1 << 20, sizeBig: 256 << 20}
	conns, memCount := 1000, 2
	// Defaults chosen so that six fronts, three rounds and every workload
	// fit in about five minutes on two cores.
	durations := map[string]time.Duration{"ka-small": 2500 * time.Millisecond,
		"ka-large": 2500 * time.Millisecond, "newconn": 2500 * time.Millisecond,
		"gzip": 2 * time.Second, "conns": 2 * time.Second, "single": 1500 * time.Millisecond}
	if cfg.Quick {
		p.sizes = map[sizeClass]int{sizeSmall: 16 << 10, sizeLarge: 128 << 10, sizeBig: 8 << 20}
		conns, memCount, p.idleWait, p.settle = 100, 1, 300*time.Millisecond, 50*time.Millisecond
		for k := range durations {
			durations[k] = time.Second
		}
	}
	if p.rounds == 0 {
		p.rounds = 3
		if cfg.Quick {
			p.rounds = 1
		}
	}
	if p.rounds < 0 {
		return nil, fmt.Errorf("%w: rounds %d", ErrConfig, p.rounds)
	}
	if cfg.Duration > 0 {
		for k := range durations {
			durations[k] = cfg.Duration
		}
	}

	all := []workload{
		{ID: "ka-small", Size: sizeSmall, Concurrency: 8},
		{ID: "ka-large", Size: sizeLarge, Concurrency: 8},
		{ID: "newconn", Size: sizeSmall, Concurrency: 8, NewConn: true},
		{ID: "gzip", Size: sizeLarge, Concurrency: 8, Gzip: true},
		{ID: "conns", Size: sizeSmall, Concurrency: conns},
		{ID: "single", Size: sizeSmall, Concurrency: 1},
		{ID: "memory", Size: sizeBig, Concurrency: 1, Count: memCount, Memory: true},
	}
	ids, err := pick("workload", cfg.Workloads, allWorkloadIDs, allWorkloadIDs)
	if err != nil {
		return nil, err
	}
	for _, w := range all {
		if !slices.Contains(ids, w.ID) {
			continue
		}
		w.Bytes = p.sizes[w.Size]
		w.Duration = durations[w.ID]
		w.Label = w.label()
		p.workloads = append(p.workloads, w)
	}

	names, err := pick("front", cfg.Fronts, frontNames(), defaultFrontNames())
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		p.fronts = append(p.fronts, frontByName(n))
	}
	return p, nil
}

// label says what a workload does, with its real sizes.
func (w workload) label() string {
	size := body.FormatSize(w.Bytes)
	switch {
	case w.Memory:
		return fmt.Sprintf("%s body, 1 scraper (memory)", size)
	case w.NewConn:
		return fmt.Sprintf("new TLS conn per scrape, %s x%d", size, w.Concurrency)
	case w.Gzip && w.GzipBytes > 0:
		return fmt.Sprintf("keep-alive gzip, %s as %.0fKiB x%d", size,
			float64(w.GzipBytes)/1024, w.Concurrency)
	case w.Gzip:
		return fmt.Sprintf("keep-alive gzip, %s x%d", size, w.Concurrency)
	default:
		return fmt.Sprintf("keep-alive, %s x%d", size, w.Concurrency)
	}
}

// pick checks that every name in want is in all and returns them in the
// order of all; an empty want means def.
func pick(what string, want, all, def []string) ([]string, error) {
	if len(want) == 0 {
		return def, nil
	}
	for _, w := range want {
		if !slices.Contains(all, w) {
			return nil, fmt.Errorf("%w: unknown %s %q (known: %s)", ErrConfig, what, w,
				strings.Join(all, ", "))
		}
	}
	var out []string
	for _, a := range all {
		if slices.Contains(want, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
