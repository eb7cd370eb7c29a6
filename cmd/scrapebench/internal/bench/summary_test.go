package bench

import (
	"math"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/load"
)

func f64(v float64) *float64 { return &v }

// okRun is a run of 1000 scrapes with the given rate, p50 and CPU seconds.
func okRun(front string, round int, perSec, p50, cpu float64, upstream *float64) RunRecord {
	res := &load.Result{Scrapes: 1000, PerSecond: perSec, P50Ms: f64(p50), P99Ms: f64(2 * p50)}
	return RunRecord{Workload: "ka-small", Front: front, Round: round, Load: res,
		FrontCPUSeconds: f64(cpu), UpstreamCPUSeconds: upstream}
}

func TestSummarize(t *testing.T) {
	p := &plan{workloads: []workload{{ID: "ka-small"}},
		fronts: []*frontKind{frontByName("direct"), frontByName("proxy"),
			frontByName("haproxy")}}
	noCPU := okRun("proxy", 3, 900, 1.4, 0, nil)
	noCPU.FrontCPUSeconds = nil
	rss := []int64{10 << 10, 30 << 10, 20 << 10}
	runs := []RunRecord{
		okRun("direct", 1, 1000, 1.0, 0.200, nil),
		okRun("direct", 2, 1200, 1.2, 0.220, nil),
		okRun("direct", 3, 800, 0.8, 0.180, nil),
		okRun("proxy", 1, 600, 1.6, 0.300, f64(0.1)),
		okRun("proxy", 2, 700, 1.5, 0.250, f64(0.1)),
		noCPU,
		{Workload: "ka-small", Front: "haproxy", Round: 1, Error: "front did not start"},
	}
	for i := range 3 {
		runs[i].FrontRSSKiB = &rss[i]
	}
	cells := summarize(p, runs)
	if len(cells) != 3 {
		t.Fatalf("%d cells, want 3", len(cells))
	}
	tests := []struct {
		name                   string
		got                    *float64
		want                   float64 // NaN: want nil
		cell, failed, runCount int
	}{
		{name: "direct rate", got: cells[0].PerSecond, want: 1000},
		{name: "direct CPU us", got: cells[0].FrontCPUMicros, want: 200},
		{name: "direct ratio to itself", got: cells[0].CPURatio, want: 1},
		{name: "direct upstream", got: cells[0].UpstreamCPUMicros, want: math.NaN()},
		{name: "direct RSS MiB, median", got: cells[0].RSSMiB, want: 20},
		{name: "proxy RSS not read", got: cells[1].RSSMiB, want: math.NaN()},
		{name: "proxy rate", got: cells[1].PerSecond, want: 700},
		{name: "proxy CPU us, two runs", got: cells[1].FrontCPUMicros, want: 275},
		{name: "proxy upstream us", got: cells[1].UpstreamCPUMicros, want: 100},
		{name: "proxy CPU ratio", got: cells[1].CPURatio, want: 1.375},
		{name: "proxy rate ratio", got: cells[1].ThroughputRatio, want: 0.7},
		{name: "proxy p50 delta", got: cells[1].P50DeltaMs, want: 0.5},
		{name: "haproxy rate", got: cells[2].PerSecond, want: math.NaN()},
		{name: "haproxy ratio", got: cells[2].CPURatio, want: math.NaN()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case math.IsNaN(tc.want) && tc.got != nil:
				t.Fatalf("got %v, want nil", *tc.got)
			case math.IsNaN(tc.want):
			case tc.got == nil:
				t.Fatalf("got nil, want %v", tc.want)
			case math.Abs(*tc.got-tc.want) > 1e-9:
				t.Fatalf("got %v, want %v", *tc.got, tc.want)
			}
		})
	}
	if c := cells[2]; c.Runs != 1 || c.Failed != 1 {
		t.Errorf("haproxy: %d runs, %d failed; want 1 and 1", c.Runs, c.Failed)
	}
}

func TestSummarizeWithoutDirect(t *testing.T) {
	p := &plan{workloads: []workload{{ID: "ka-small"}},
		fronts: []*frontKind{frontByName("proxy")}}
	cells := summarize(p, []RunRecord{okRun("proxy", 1, 600, 1.6, 0.3, f64(0.1))})
	if len(cells) != 1 || cells[0].CPURatio != nil || cells[0].FrontCPUMicros == nil {
		t.Fatalf("cells %+v: want a figure and no ratio", cells)
	}
}

func TestCPUDelta(t *testing.T) {
	tests := []struct {
		name          string
		front         string
		before, after cpuSample
		wantFront     float64 // NaN: want nil
		wantUp        float64
		wantErr       bool
	}{
		{name: "proxy", front: "proxy", before: cpuSample{front: 1e9, upstream: 2e9},
			after: cpuSample{front: 3e9, upstream: 2.5e9, procs: 1}, wantFront: 2, wantUp: 0.5},
		{name: "direct has no upstream", front: "direct", before: cpuSample{front: 1e9},
			after: cpuSample{front: 1.25e9}, wantFront: 0.25, wantUp: math.NaN()},
		{name: "sample failed", front: "proxy", before: cpuSample{err: errExited},
			wantFront: math.NaN(), wantUp: math.NaN(), wantErr: true},
		{name: "went backwards", front: "nginx", before: cpuSample{front: 5e9},
			after: cpuSample{front: 4e9}, wantFront: math.NaN(), wantUp: math.NaN(),
			wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := RunRecord{Front: tc.front}
			(&runner{}).cpuDelta(&rec, tc.before, tc.after)
			if (rec.CPUError != "") != tc.wantErr {
				t.Fatalf("CPUError %q, want error %v", rec.CPUError, tc.wantErr)
			}
			for _, c := range []struct {
				got  *float64
				want float64
			}{{rec.FrontCPUSeconds, tc.wantFront}, {rec.UpstreamCPUSeconds, tc.wantUp}} {
				if math.IsNaN(c.want) != (c.got == nil) ||
					(c.got != nil && math.Abs(*c.got-c.want) > 1e-9) {
					t.Fatalf("got %v, want %v", c.got, c.want)
				}
			}
		})
	}
}
