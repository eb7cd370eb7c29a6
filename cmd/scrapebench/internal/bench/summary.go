package bench

import (
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/stats"
)

// Cell is the medians of one (workload, front) pair over its rounds. A
// nil figure was not measured: every run failed, or it does not apply.
type Cell struct {
	// Workload and Front name the pair.
	Workload string `json:"workload"`
	Front    string `json:"front"`
	// Runs counts the loads, Failed those that did not run to the end.
	Runs   int `json:"runs"`
	Failed int `json:"failed"`
	// Errors counts failed scrapes over every run.
	Errors int64 `json:"errors"`
	// CPURuns counts the runs whose front CPU time was measured, which
	// the CPU median is taken over.
	CPURuns int `json:"cpu_runs"`
	// PerSecond, P50Ms and P99Ms are medians of the runs' figures.
	PerSecond *float64 `json:"per_second"`
	P50Ms     *float64 `json:"p50_ms"`
	P99Ms     *float64 `json:"p99_ms"`
	// FrontCPUMicros is the median CPU time of the front's processes per
	// good scrape, in microseconds; UpstreamCPUMicros the daemon's, for
	// fronts with an upstream hop.
	FrontCPUMicros    *float64 `json:"front_cpu_us_per_scrape"`
	UpstreamCPUMicros *float64 `json:"upstream_cpu_us_per_scrape"`
	// CPURatio and ThroughputRatio divide this cell's medians by those of
	// the direct mTLS server in the same workload; P50DeltaMs subtracts.
	CPURatio        *float64 `json:"cpu_ratio_to_direct"`
	ThroughputRatio *float64 `json:"throughput_ratio_to_direct"`
	P50DeltaMs      *float64 `json:"p50_delta_to_direct_ms"`
	// RSSMiB is the median resident memory of the front's processes at
	// the end of the loads, connections still open.
	RSSMiB *float64 `json:"rss_mib"`
}

// summarize computes the cells of the timed workloads, in table order.
func summarize(p *plan, runs []RunRecord) []Cell {
	var cells []Cell
	for _, w := range p.workloads {
		if w.Memory {
			continue
		}
		var direct *Cell
		start := len(cells)
		for _, k := range p.fronts {
			c, ok := cell(w.ID, k.Name, runs)
			if !ok {
				continue
			}
			cells = append(cells, c)
		}
		for i := start; i < len(cells); i++ {
			if cells[i].Front == "direct" {
				direct = &cells[i]
			}
		}
		for i := start; i < len(cells); i++ {
			cells[i].compare(direct)
		}
	}
	return cells
}

// cell gathers the runs of one pair; ok is false when there were none.
func cell(workload, front string, runs []RunRecord) (Cell, bool) {
	c := Cell{Workload: workload, Front: front}
	var perSec, p50, p99, fcpu, ucpu, rss []float64
	for _, run := range runs {
		if run.Workload != workload || run.Front != front {
			continue
		}
		c.Runs++
		if !run.ok() {
			c.Failed++
			continue
		}
		l := run.Load
		c.Errors += l.Errors
		if run.FrontRSSKiB != nil {
			rss = append(rss, float64(*run.FrontRSSKiB)/1024)
		}
		perSec = append(perSec, l.PerSecond)
		if l.P50Ms != nil && l.P99Ms != nil {
			p50, p99 = append(p50, *l.P50Ms), append(p99, *l.P99Ms)
		}
		if l.Scrapes == 0 {
			continue
		}
		if run.FrontCPUSeconds != nil {
			fcpu = append(fcpu, *run.FrontCPUSeconds*1e6/float64(l.Scrapes))
			c.CPURuns++
		}
		if run.UpstreamCPUSeconds != nil {
			ucpu = append(ucpu, *run.UpstreamCPUSeconds*1e6/float64(l.Scrapes))
		}
	}
	if c.Runs == 0 {
		return c, false
	}
	c.PerSecond, c.P50Ms, c.P99Ms = median(perSec), median(p50), median(p99)
	c.FrontCPUMicros, c.UpstreamCPUMicros = median(fcpu), median(ucpu)
	c.RSSMiB = median(rss)
	return c, true
}

// compare fills the ratios to the direct server's cell, which may be nil.
func (c *Cell) compare(direct *Cell) {
	if direct == nil {
		return
	}
	c.CPURatio = ratio(c.FrontCPUMicros, direct.FrontCPUMicros)
	c.ThroughputRatio = ratio(c.PerSecond, direct.PerSecond)
	if c.P50Ms != nil && direct.P50Ms != nil {
		d := *c.P50Ms - *direct.P50Ms
		c.P50DeltaMs = &d
	}
}

func median(xs []float64) *float64 {
	m, ok := stats.Median(xs)
	if !ok {
		return nil
	}
	return &m
}

func ratio(num, den *float64) *float64 {
	if num == nil || den == nil {
		return nil
	}
	r, ok := stats.Ratio(*num, *den)
	if !ok {
		return nil
	}
	return &r
}
