package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/bench"
)

// modulePath is the module the binaries under test come from.
const modulePath = "github.com/mtls-metrics-proxy/mtls-metrics-proxy"

// smokeFronts are the fronts the smoke run needs nothing installed for.
var smokeFronts = []string{"none", "direct", "proxy"}

// TestSmoke runs the whole bench briefly, as "make bench" would but with
// the fronts that need nothing installed, so that the harness cannot rot:
// every role runs as a process, and every cell must hold real figures.
func TestSmoke(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("scrapebench reads /proc")
	}
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir := t.TempDir()
	build(t, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jsonPath := filepath.Join(dir, "results.json")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "scrapebench"), "run", "--quick",
		"--duration", "300ms", "--fronts", strings.Join(smokeFronts, ","),
		"--proxy-bin", filepath.Join(dir, "mtls-metrics-proxy"), "--json", jsonPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scrapebench run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(),
			stderr.String())
	}
	t.Logf("table:\n%s", stdout.String())

	rep := readReport(t, jsonPath)
	checkCells(t, rep)
	checkMemory(t, rep)
	checkTable(t, stdout.String(), rep)
}

// build compiles scrapebench and the proxy into dir.
func build(t *testing.T, dir string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
		modulePath+"/cmd/scrapebench", modulePath+"/cmd/mtls-metrics-proxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}
}

func readReport(t *testing.T, path string) *bench.Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the JSON results: %v", err)
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("decoding the JSON results: %v", err)
	}
	return &rep
}

// checkCells wants a cell per timed workload and front with throughput,
// latency and CPU figures, no error, and the proxy's upstream CPU.
func checkCells(t *testing.T, rep *bench.Report) {
	t.Helper()
	cells := map[string]bench.Cell{}
	for _, c := range rep.Cells {
		cells[c.Workload+"/"+c.Front] = c
	}
	for _, w := range rep.Workloads {
		if w.ID == "memory" {
			continue
		}
		for _, front := range smokeFronts {
			t.Run(w.ID+"/"+front, func(t *testing.T) {
				c, ok := cells[w.ID+"/"+front]
				switch {
				case !ok:
					t.Fatal("no cell")
				case c.Failed != 0 || c.Errors != 0:
					t.Fatalf("%d failed runs, %d errors", c.Failed, c.Errors)
				case !positive(c.PerSecond) || !positive(c.P50Ms) || !positive(c.P99Ms):
					t.Fatalf("scrapes/s %v, p50 %v, p99 %v: want all > 0", c.PerSecond,
						c.P50Ms, c.P99Ms)
				case !positive(c.FrontCPUMicros) || !positive(c.CPURatio):
					t.Fatalf("front CPU %v, ratio %v: want > 0", c.FrontCPUMicros, c.CPURatio)
				case front == "proxy" && !positive(c.UpstreamCPUMicros):
					t.Fatalf("upstream CPU %v: want > 0", c.UpstreamCPUMicros)
				}
			})
		}
	}
	if len(rep.Runs) != len(cells) {
		t.Errorf("%d runs for %d cells in one round", len(rep.Runs), len(cells))
	}
}

// checkMemory wants the proxy's idle and peak RSS, the peak at least the
// idle figure.
func checkMemory(t *testing.T, rep *bench.Report) {
	t.Helper()
	if len(rep.Memory) != 1 || rep.Memory[0].Front != "proxy" {
		t.Fatalf("memory records %+v: want one, for the proxy", rep.Memory)
	}
	m := rep.Memory[0]
	if m.Error != "" || m.IdleRSSKiB == nil || m.PeakRSSKiB == nil || *m.IdleRSSKiB <= 0 ||
		*m.PeakRSSKiB < *m.IdleRSSKiB {
		t.Fatalf("memory %+v: want idle RSS > 0 and a peak above it", m)
	}
	if m.Run.Load == nil || m.Run.Load.Scrapes < 1 || m.Run.Load.Errors != 0 {
		t.Fatalf("memory load %+v: want a good scrape", m.Run.Load)
	}
}

// checkTable wants a row per cell in the printed table.
func checkTable(t *testing.T, table string, rep *bench.Report) {
	t.Helper()
	for _, front := range smokeFronts {
		rows := 0
		for line := range strings.SplitSeq(table, "\n") {
			if strings.Contains(line, "| "+front+" ") && !strings.Contains(line, "failed") {
				rows++
			}
		}
		// One row per timed workload, one in the fronts table, and the
		// proxy's in the memory table.
		want := len(rep.Workloads) - 1 + 1
		if front == "proxy" {
			want++
		}
		if rows != want {
			t.Errorf("table has %d rows for %s without \"failed\", want %d", rows, front, want)
		}
	}
}

func positive(v *float64) bool { return v != nil && *v > 0 }
