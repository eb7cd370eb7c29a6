package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Marks for figures the table cannot show.
const (
	markFailed = "failed" // measured, and the measurement failed
	markNA     = "-"      // does not apply to this front
	markNoBase = "n/a"    // the direct server's figure is missing
)

// WriteTable prints the report as plain text whose tables are markdown.
func (rep *Report) WriteTable(w io.Writer) {
	wall := (time.Duration(rep.WallSeconds) * time.Second).Round(time.Second)
	fmt.Fprintf(w, "scrapebench, %s, nproc %d, Linux %s, %s; %d round(s), medians; "+
		"took %v\n\n", rep.Started.UTC().Format("2006-01-02 15:04 MST"), rep.Host.NProc,
		rep.Host.Kernel, rep.Host.GoVersion, rep.Rounds, wall)
	rep.writeMain(w)
	rep.writeConnsRSS(w)
	if len(rep.Memory) > 0 {
		fmt.Fprintln(w)
		rep.writeMemory(w)
	}
	fmt.Fprintln(w)
	rep.writeFronts(w)
	fmt.Fprintln(w)
	fmt.Fprint(w, tableNotes)
}

// tableNotes says how the figures were taken.
const tableNotes = `CPU: utime+stime (/proc/PID/stat) of the front's process tree, workers
included, from the end of the load's warm-up to its last scrape, per good scrape.
"none" is the upstream scraped in clear text; its CPU is the upstream's own.
upstream CPU: the daemon's, serving through that front. x direct: this median
divided by the direct mTLS server's; p50 - direct: the difference in ms.
Latency: request sent to last body byte read, by the scraper (its own process).
New TLS conn per scrape: no keep-alive and no session cache, so every scrape is
a full handshake ("none": a new TCP connection); "resumed" counts resumptions seen.
Re-dials: connections opened during keep-alive loads after the warm-up.
RSS with many connections: resident memory of the front's process tree when
the load's last scrape is done, its connections still open (median; the sum
over processes, as for memory).
`

func (rep *Report) writeMain(w io.Writer) {
	labels := map[string]string{}
	for _, wl := range rep.Workloads {
		labels[wl.ID] = wl.Label
	}
	forwards := map[string]bool{}
	for _, k := range frontKinds {
		forwards[k.Name] = k.forwards
	}
	head := []string{"workload", "front", "scrapes/s", "p50 ms", "p99 ms", "errors",
		"front CPU us/scrape", "upstream CPU us/scrape", "CPU x direct",
		"scrapes/s x direct", "p50 - direct ms"}
	var rows [][]string
	for _, c := range rep.Cells {
		errs := fmt.Sprint(c.Errors)
		if c.Failed > 0 {
			errs += fmt.Sprintf(", %d/%d runs failed", c.Failed, c.Runs)
		}
		up := markNA
		if forwards[c.Front] {
			up = num(c.UpstreamCPUMicros, markFailed, cpuFormat)
		}
		rows = append(rows, []string{labels[c.Workload], c.Front,
			num(c.PerSecond, markFailed, "%.0f"), num(c.P50Ms, markFailed, msFormat),
			num(c.P99Ms, markFailed, msFormat), errs,
			num(c.FrontCPUMicros, markFailed, cpuFormat), up,
			num(c.CPURatio, markNoBase, "%.2f"), num(c.ThroughputRatio, markNoBase, "%.2f"),
			num(c.P50DeltaMs, markNoBase, "%+.2f")})
	}
	writeTable(w, head, rows)
}

// writeConnsRSS prints each front's resident memory at the end of the
// many-connection load. Only that load's figure is shown: a front serves
// every load of one body size in turn, and the memory the largest of them
// left resident shows in the figures of the loads after it.
func (rep *Report) writeConnsRSS(w io.Writer) {
	var parts []string
	for _, c := range rep.Cells {
		if c.Workload == "conns" {
			parts = append(parts, c.Front+" "+num(c.RSSMiB, markFailed, "%.1f"))
		}
	}
	if len(parts) == 0 {
		return
	}
	fmt.Fprintf(w, "\nRSS MiB at the end of %q, connections open: %s\n",
		rep.workloadLabel("conns"), strings.Join(parts, ", "))
}

// workloadLabel is the label of the workload with id, or id itself.
func (rep *Report) workloadLabel(id string) string {
	for _, wl := range rep.Workloads {
		if wl.ID == id {
			return wl.Label
		}
	}
	return id
}

func (rep *Report) writeMemory(w io.Writer) {
	fmt.Fprintf(w, "Memory: a fresh process of each front; idle RSS after start, then %s\n"+
		"(peak = VmHWM since start; for several processes, the sum)\n\n",
		rep.workloadLabel("memory"))
	head := []string{"front", "idle RSS MiB", "peak RSS MiB", "scrapes", "MiB/s",
		"front CPU ms/scrape", "errors"}
	var rows [][]string
	for _, m := range rep.Memory {
		scrapes, rate, cpu, errs := markFailed, markFailed, markFailed, markFailed
		if l := m.Run.Load; m.Run.ok() {
			scrapes, errs = fmt.Sprint(l.Scrapes), fmt.Sprint(l.Errors)
			if l.DurationSeconds > 0 {
				rate = fmt.Sprintf("%.0f", float64(l.BodyBytes)/(1<<20)/l.DurationSeconds)
			}
			if m.Run.FrontCPUSeconds != nil && l.Scrapes > 0 {
				cpu = fmt.Sprintf("%.0f", *m.Run.FrontCPUSeconds*1e3/float64(l.Scrapes))
			}
		}
		rows = append(rows, []string{m.Front, kib(m.IdleRSSKiB), kib(m.PeakRSSKiB), scrapes,
			rate, cpu, errs})
	}
	writeTable(w, head, rows)
}

func (rep *Report) writeFronts(w io.Writer) {
	head := []string{"front", "version", "workers", "TLS with the scraper", "HTTP",
		"new-conn resumed", "keep-alive re-dials", "upstream keep-alive"}
	var rows [][]string
	for _, f := range rep.Fronts {
		if f.Skipped != "" {
			rows = append(rows, []string{f.Name, "skipped: " + f.Skipped, "", "", "", "", "", ""})
			continue
		}
		tlsText, resumed := markNA, markNA
		if f.TLS != nil {
			tlsText = f.TLS.Version + ", " + f.TLS.CipherSuite + ", " + f.TLS.KeyExchange
			resumed = fmt.Sprintf("%d of %d", f.NewConnResumed, f.NewConnScrapes)
		}
		rows = append(rows, []string{f.Name, f.Version, f.Workers, tlsText, f.Proto, resumed,
			fmt.Sprint(f.KeepAliveRedials), f.UpstreamPool})
	}
	writeTable(w, head, rows)
}

const (
	msFormat  = "%.2f"
	cpuFormat = "%.0f"
)

func num(v *float64, missing, format string) string {
	if v == nil {
		return missing
	}
	return fmt.Sprintf(format, *v)
}

func kib(v *int64) string {
	if v == nil {
		return markFailed
	}
	return fmt.Sprintf("%.1f", float64(*v)/1024)
}

// writeTable prints a markdown table whose columns are also aligned for
// reading as plain text: text to the left, figures to the right.
func writeTable(w io.Writer, head []string, rows [][]string) {
	width := make([]int, len(head))
	numeric := make([]bool, len(head))
	for i, h := range head {
		width[i] = utf8.RuneCountInString(h)
		numeric[i] = i > 0
	}
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
			if cell != "" && !isFigure(cell) {
				numeric[i] = false
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, cell := range cells {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if numeric[i] {
				b.WriteString(" " + pad + cell + " |")
			} else {
				b.WriteString(" " + cell + pad + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i]-1) + ":"
		if !numeric[i] {
			sep[i] = strings.Repeat("-", width[i])
		}
	}
	line(sep)
	for _, row := range rows {
		line(row)
	}
}

// isFigure reports whether a cell is a number or one of the marks.
func isFigure(s string) bool {
	if s == markFailed || s == markNA || s == markNoBase {
		return true
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789.+-", r) {
			return false
		}
	}
	return true
}

// printProgress tells the person waiting what just ran.
func (r *runner) printProgress(w workload, rec RunRecord) {
	r.progress++
	prefix := fmt.Sprintf("[%3d/%d] round %d %-36s %-10s", r.progress, r.total, rec.Round,
		w.Label, rec.Front)
	if !rec.ok() {
		fmt.Fprintf(r.cfg.Stderr, "%s failed: %s\n", prefix, firstLine(rec.Error))
		return
	}
	l := rec.Load
	cpu := "cpu " + markFailed
	if rec.FrontCPUSeconds != nil && l.Scrapes > 0 {
		cpu = fmt.Sprintf("cpu %.0fus/scrape",
			*rec.FrontCPUSeconds*1e6/float64(l.Scrapes))
	}
	p50 := markFailed
	if l.P50Ms != nil {
		p50 = (time.Duration(*l.P50Ms * float64(time.Millisecond))).Round(time.Microsecond).
			String()
	}
	fmt.Fprintf(r.cfg.Stderr, "%s %8.0f/s p50 %-9s errors %d %s\n", prefix, l.PerSecond, p50,
		l.Errors, cpu)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
