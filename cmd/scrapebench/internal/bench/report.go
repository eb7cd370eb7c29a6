package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/load"
)

// Report is everything a run measured: the medians the table shows, and
// every load's raw figures.
type Report struct {
	// Started and WallSeconds time the whole run.
	Started     time.Time `json:"started"`
	WallSeconds float64   `json:"wall_s"`
	// Host describes the machine.
	Host Host `json:"host"`
	// Rounds is how many times every (workload, front) pair ran.
	Rounds int `json:"rounds"`
	// Quick is set for a short smoke run.
	Quick bool `json:"quick"`
	// Fronts describes every front asked for, skipped ones included.
	Fronts []FrontInfo `json:"fronts"`
	// Workloads describes what was run.
	Workloads []WorkloadInfo `json:"workloads"`
	// Cells are the medians per (workload, front), in table order.
	Cells []Cell `json:"cells"`
	// Memory holds the memory workload, one record per forwarding front.
	Memory []MemoryRecord `json:"memory"`
	// Runs holds every load of the timed workloads, in the order run.
	Runs []RunRecord `json:"runs"`
}

// Host describes the machine a run used.
type Host struct {
	// NProc is the number of CPUs the run could use.
	NProc int `json:"nproc"`
	// Kernel is the Linux release.
	Kernel string `json:"kernel"`
	// GoVersion built scrapebench.
	GoVersion string `json:"go_version"`
	// NoFile is the open-file limit the fronts inherited.
	NoFile uint64 `json:"nofile"`
}

// FrontInfo describes one front of a run.
type FrontInfo struct {
	// Name is the front's name.
	Name string `json:"name"`
	// Version is what the front's binary says of itself.
	Version string `json:"version,omitempty"`
	// Workers says how many threads or processes serve.
	Workers string `json:"workers"`
	// UpstreamPool says how it keeps connections to the upstream.
	UpstreamPool string `json:"upstream_pool"`
	// Skipped says why the front did not run, "" when it did.
	Skipped string `json:"skipped,omitempty"`
	// TLS is what a scraper's connection negotiated with it.
	TLS *load.TLSInfo `json:"tls,omitempty"`
	// Proto is the HTTP version the scrapes used.
	Proto string `json:"proto,omitempty"`
	// NewConnScrapes and NewConnResumed count the scrapes of the
	// new-connection workload and how many of them resumed a session.
	NewConnScrapes int64 `json:"new_conn_scrapes"`
	NewConnResumed int64 `json:"new_conn_resumed"`
	// KeepAliveRedials counts connections dialed during the timed part of
	// keep-alive loads: the front closed a scraper's connection, or, now
	// and then, Go's transport dialed before the last connection was back
	// in its pool.
	KeepAliveRedials int64 `json:"keep_alive_redials"`
}

// WorkloadInfo describes one workload of a run.
type WorkloadInfo struct {
	// ID names the workload in --workloads.
	ID string `json:"id"`
	// Label says what it does, with real sizes.
	Label string `json:"label"`
	// BodyBytes is the uncompressed body; GzipBytes its gzip encoding,
	// for the gzip workload.
	BodyBytes int `json:"body_bytes"`
	GzipBytes int `json:"gzip_bytes,omitempty"`
	// Concurrency is the number of scrapers.
	Concurrency int `json:"concurrency"`
	// NewConn and Gzip are the load's modes.
	NewConn bool `json:"new_conn"`
	Gzip    bool `json:"gzip"`
	// DurationSeconds is each load's length; Count its scrapes instead.
	DurationSeconds float64 `json:"duration_s,omitempty"`
	Count           int     `json:"count,omitempty"`
}

func newReport(p *plan, noFile uint64) *Report {
	rep := &Report{Started: time.Now(), Rounds: p.rounds, Host: Host{NProc: runtime.NumCPU(),
		GoVersion: runtime.Version(), NoFile: noFile}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		rep.Host.Kernel = strings.TrimSpace(string(b))
	}
	return rep
}

// finish computes the medians and the fronts' connection figures.
func (rep *Report) finish(p *plan) {
	rep.Quick = p.quick
	rep.WallSeconds = time.Since(rep.Started).Seconds()
	rep.Cells = summarize(p, rep.Runs)
	for _, w := range p.workloads {
		info := WorkloadInfo{ID: w.ID, Label: w.Label, BodyBytes: w.Bytes,
			GzipBytes: w.GzipBytes, Concurrency: w.Concurrency, NewConn: w.NewConn,
			Gzip: w.Gzip, Count: w.Count}
		if w.Count == 0 {
			info.DurationSeconds = w.Duration.Seconds()
		}
		rep.Workloads = append(rep.Workloads, info)
	}
	byID := map[string]workload{}
	for _, w := range p.workloads {
		byID[w.ID] = w
	}
	for i := range rep.Fronts {
		f := &rep.Fronts[i]
		for _, run := range rep.Runs {
			if run.Front != f.Name || !run.ok() {
				continue
			}
			if f.TLS == nil && run.Load.TLS != nil {
				f.TLS, f.Proto = run.Load.TLS, run.Load.Proto
			}
			if f.Proto == "" {
				f.Proto = run.Load.Proto
			}
			w := byID[run.Workload]
			if w.NewConn {
				f.NewConnScrapes += run.Load.Scrapes
				f.NewConnResumed += run.Load.Resumed
			} else {
				f.KeepAliveRedials += run.Load.Conns
			}
		}
	}
}

// WriteJSON writes the report, indented, to path.
func (rep *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	return nil
}
