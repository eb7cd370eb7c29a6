package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	writeTable(&buf, []string{"front", "scrapes/s", "ratio"}, [][]string{
		{"proxy", "1234", "1.05"},
		{"haproxy", "99", "n/a"},
		{"nginx", "failed", "-"},
	})
	want := `| front   | scrapes/s | ratio |
| ------- | --------: | ----: |
| proxy   |      1234 |  1.05 |
| haproxy |        99 |   n/a |
| nginx   |    failed |     - |
`
	if got := buf.String(); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestIsFigure(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"12", true}, {"+0.25", true}, {"-3.5", true}, {"failed", true}, {"n/a", true},
		{"-", true}, {"proxy", false}, {"0 of 12", false}, {"1.5 MiB", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := isFigure(tc.in); got != tc.want {
				t.Fatalf("isFigure(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestWriteTableMarksMissing checks that a failed measurement shows as
// failed, a figure that does not apply as "-", and a missing base as n/a:
// never as a zero.
func TestWriteTableMarksMissing(t *testing.T) {
	rep := &Report{
		Workloads: []WorkloadInfo{{ID: "ka-small", Label: "keep-alive, 100KiB x8"}},
		Cells: []Cell{
			{Workload: "ka-small", Front: "direct", Runs: 1, PerSecond: f64(10),
				P50Ms: f64(1), P99Ms: f64(2), FrontCPUMicros: f64(100)},
			{Workload: "ka-small", Front: "proxy", Runs: 1, Failed: 1},
		},
	}
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	var proxyRow, directRow string
	for line := range strings.SplitSeq(buf.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "| keep-alive, 100KiB x8 | proxy "):
			proxyRow = line
		case strings.HasPrefix(line, "| keep-alive, 100KiB x8 | direct "):
			directRow = line
		}
	}
	if strings.Count(proxyRow, "failed") != 6 || !strings.Contains(proxyRow, "1/1 runs failed") {
		t.Errorf("proxy row %q: want every figure failed", proxyRow)
	}
	if !strings.Contains(directRow, " - ") || strings.Contains(directRow, "failed") {
		t.Errorf("direct row %q: want \"-\" for the upstream CPU, nothing failed", directRow)
	}
}

// TestWriteTableConnsRSS checks the line of resident memory under many
// connections: the conns load's medians only, failed where one is missing.
func TestWriteTableConnsRSS(t *testing.T) {
	rep := &Report{
		Workloads: []WorkloadInfo{{ID: "ka-small", Label: "keep-alive, 100KiB x8"},
			{ID: "conns", Label: "keep-alive, 100KiB x1000"}},
		Cells: []Cell{
			{Workload: "ka-small", Front: "proxy", Runs: 1, RSSMiB: f64(987.6)},
			{Workload: "conns", Front: "direct", Runs: 1, RSSMiB: f64(70.14)},
			{Workload: "conns", Front: "proxy", Runs: 1, Failed: 1},
		},
	}
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	want := `RSS MiB at the end of "keep-alive, 100KiB x1000", connections open: ` +
		"direct 70.1, proxy failed\n"
	if !strings.Contains(buf.String(), want) {
		t.Fatalf("table:\n%s\nwant a line %q", buf.String(), want)
	}
	if strings.Contains(buf.String(), "987") {
		t.Errorf("table shows the RSS of a load other than conns:\n%s", buf.String())
	}
}
