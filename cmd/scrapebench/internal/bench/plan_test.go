package bench

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestNewPlan(t *testing.T) {
	ids := func(p *plan) []string {
		var out []string
		for _, w := range p.workloads {
			out = append(out, w.ID)
		}
		return out
	}
	tests := []struct {
		name      string
		cfg       Config
		err       error
		rounds    int
		workloads []string
		fronts    []string
		check     func(t *testing.T, p *plan)
	}{
		{
			name: "defaults", rounds: 3, workloads: allWorkloadIDs,
			fronts: []string{"none", "direct", "proxy", "haproxy", "nginx", "caddy"},
			check: func(t *testing.T, p *plan) {
				want := map[string]int{"ka-small": 100 << 10, "ka-large": 1 << 20,
					"conns": 100 << 10, "memory": 256 << 20}
				for _, w := range p.workloads {
					if b, ok := want[w.ID]; ok && w.Bytes != b {
						t.Errorf("%s: %d bytes, want %d", w.ID, w.Bytes, b)
					}
					if w.ID == "conns" && w.Concurrency != 1000 {
						t.Errorf("conns: concurrency %d, want 1000", w.Concurrency)
					}
					if !w.Memory && w.Duration <= 0 {
						t.Errorf("%s: no duration", w.ID)
					}
				}
			},
		},
		{
			name: "quick", cfg: Config{Quick: true}, rounds: 1, workloads: allWorkloadIDs,
			fronts: defaultFrontNames(),
			check: func(t *testing.T, p *plan) {
				for _, w := range p.workloads {
					if w.ID == "conns" && w.Concurrency != 100 {
						t.Errorf("conns: concurrency %d, want 100", w.Concurrency)
					}
					if !w.Memory && w.Duration != time.Second {
						t.Errorf("%s: duration %v, want 1s", w.ID, w.Duration)
					}
				}
			},
		},
		{
			name: "selection keeps table order",
			cfg: Config{Rounds: 2, Duration: 300 * time.Millisecond,
				Fronts: []string{"proxy", "none"}, Workloads: []string{"single", "ka-small"}},
			rounds: 2, workloads: []string{"ka-small", "single"},
			fronts: []string{"none", "proxy"},
			check: func(t *testing.T, p *plan) {
				for _, w := range p.workloads {
					if w.Duration != 300*time.Millisecond {
						t.Errorf("%s: duration %v, want the override", w.ID, w.Duration)
					}
				}
			},
		},
		{
			name: "an optional front runs when named",
			cfg:  Config{Fronts: []string{"proxy-unix", "proxy"}}, rounds: 3,
			workloads: allWorkloadIDs, fronts: []string{"proxy", "proxy-unix"},
		},
		{name: "unknown front", cfg: Config{Fronts: []string{"envoy"}}, err: ErrConfig},
		{name: "unknown workload", cfg: Config{Workloads: []string{"h3"}}, err: ErrConfig},
		{name: "negative rounds", cfg: Config{Rounds: -1}, err: ErrConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newPlan(tc.cfg)
			if !errors.Is(err, tc.err) {
				t.Fatalf("newPlan error = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if p.rounds != tc.rounds {
				t.Errorf("rounds %d, want %d", p.rounds, tc.rounds)
			}
			if got := ids(p); !slices.Equal(got, tc.workloads) {
				t.Errorf("workloads %v, want %v", got, tc.workloads)
			}
			var fronts []string
			for _, k := range p.fronts {
				fronts = append(fronts, k.Name)
			}
			if !slices.Equal(fronts, tc.fronts) {
				t.Errorf("fronts %v, want %v", fronts, tc.fronts)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestWorkloadLabel(t *testing.T) {
	tests := []struct {
		w    workload
		want string
	}{
		{workload{Bytes: 100 << 10, Concurrency: 8}, "keep-alive, 100KiB x8"},
		{workload{Bytes: 100 << 10, Concurrency: 8, NewConn: true},
			"new TLS conn per scrape, 100KiB x8"},
		{workload{Bytes: 1 << 20, Concurrency: 8, Gzip: true}, "keep-alive gzip, 1MiB x8"},
		{workload{Bytes: 1 << 20, Concurrency: 8, Gzip: true, GzipBytes: 140 << 10},
			"keep-alive gzip, 1MiB as 140KiB x8"},
		{workload{Bytes: 256 << 20, Concurrency: 1, Memory: true},
			"256MiB body, 1 scraper (memory)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.w.label(); got != tc.want {
				t.Fatalf("label() = %q, want %q", got, tc.want)
			}
		})
	}
}
