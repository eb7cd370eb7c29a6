package procstat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// statLine builds a stat line with the given command name, parent and
// CPU ticks, in the field layout of proc(5).
func statLine(pid int, comm string, ppid int, ut, st, cut, cst int) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 1234 0 0 0 %d %d %d %d "+
		"20 0 3 0 12345 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
		pid, comm, ppid, pid, pid, ut, st, cut, cst)
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Stat
		err  error
	}{
		{
			name: "plain",
			line: statLine(42, "nginx", 1, 150, 25, 3, 1),
			want: Stat{PID: 42, PPID: 1, Comm: "nginx", UTime: 1500 * time.Millisecond,
				STime: 250 * time.Millisecond, CUTime: 30 * time.Millisecond,
				CSTime: 10 * time.Millisecond},
		},
		{
			name: "command with spaces and parentheses",
			line: statLine(7, "a) S 99 (b", 3, 1, 2, 0, 0),
			want: Stat{PID: 7, PPID: 3, Comm: "a) S 99 (b", UTime: 10 * time.Millisecond,
				STime: 20 * time.Millisecond},
		},
		{name: "no command", line: "42 S 1 2 3", err: ErrMalformed},
		{name: "bad pid", line: "x (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14", err: ErrMalformed},
		{name: "truncated", line: "42 (a) S 1 2 3 4 5 6 7 8 9 10", err: ErrMalformed},
		{name: "negative ticks", line: statLine(1, "a", 0, -1, 0, 0, 0), err: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.line))
			if !errors.Is(err, tc.err) {
				t.Fatalf("error = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStatCPU(t *testing.T) {
	s := Stat{UTime: 1, STime: 2, CUTime: 4, CSTime: 8}
	if got := s.CPU(); got != 15 {
		t.Fatalf("CPU() = %v, want 15ns", got)
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name string
		data string
		want Memory
		err  error
	}{
		{
			name: "running process",
			data: "Name:\tproxy\nVmPeak:\t 800000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   12288 kB\n",
			want: Memory{RSSKiB: 12288, HWMKiB: 20480},
		},
		{name: "zombie", data: "Name:\tx\nState:\tZ (zombie)\n", err: ErrMalformed},
		{name: "bad unit", data: "VmHWM:\t1 MB\nVmRSS:\t1 kB\n", err: ErrMalformed},
		{name: "bad number", data: "VmHWM:\tx kB\nVmRSS:\t1 kB\n", err: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tc.data))
			if !errors.Is(err, tc.err) {
				t.Fatalf("error = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// fakeProc writes a proc tree: pid -> {ppid, utime ticks, rss KiB}.
func fakeProc(t *testing.T, procs map[int][3]int) FS {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := statLine(pid, "p"+strconv.Itoa(pid), p[0], p[1], 1, 0, 0)
		status := fmt.Sprintf("VmHWM:\t%d kB\nVmRSS:\t%d kB\n", 2*p[2], p[2])
		for name, data := range map[string]string{"stat": stat, "status": status} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes are skipped.
	if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return FS{Root: root}
}

func TestTree(t *testing.T) {
	p := fakeProc(t, map[int][3]int{
		1:  {0, 500, 100}, // init, not below the master
		10: {1, 10, 1000}, // nginx master
		11: {10, 40, 2000},
		12: {10, 50, 3000},
		13: {12, 5, 10}, // a grandchild
		20: {1, 999, 9999},
	})
	tests := []struct {
		name    string
		pid     int
		cpu     time.Duration
		procs   int
		memory  Memory
		wantErr bool
	}{
		{name: "master and workers", pid: 10, cpu: (10 + 40 + 50 + 5 + 4) * ClockTick,
			procs: 4, memory: Memory{RSSKiB: 6010, HWMKiB: 12020}},
		{name: "leaf", pid: 13, cpu: 6 * ClockTick, procs: 1,
			memory: Memory{RSSKiB: 10, HWMKiB: 20}},
		{name: "missing", pid: 99, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cpu, n, err := p.TreeCPU(tc.pid)
			if (err != nil) != tc.wantErr {
				t.Fatalf("TreeCPU error = %v, want error %v", err, tc.wantErr)
			}
			if cpu != tc.cpu || n != tc.procs {
				t.Fatalf("TreeCPU = %v over %d, want %v over %d", cpu, n, tc.cpu, tc.procs)
			}
			m, err := p.TreeMemory(tc.pid)
			if (err != nil) != tc.wantErr {
				t.Fatalf("TreeMemory error = %v, want error %v", err, tc.wantErr)
			}
			if m != tc.memory {
				t.Fatalf("TreeMemory = %+v, want %+v", m, tc.memory)
			}
		})
	}
}

// TestLiveProcess reads this test's own process, which must have spent
// some CPU time and hold some memory.
func TestLiveProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn at least a few clock ticks
	}
	var p FS
	cpu, n, err := p.TreeCPU(os.Getpid())
	if err != nil || cpu <= 0 || n < 1 {
		t.Fatalf("TreeCPU(self) = %v, %d, %v", cpu, n, err)
	}
	m, err := p.Memory(os.Getpid())
	if err != nil || m.RSSKiB <= 0 || m.HWMKiB < m.RSSKiB {
		t.Fatalf("Memory(self) = %+v, %v", m, err)
	}
}
