package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ClockTick is the unit of the CPU times in /proc/PID/stat. The kernel
// reports them in USER_HZ, which is 100 on every architecture Linux
// exposes to user space, whatever the kernel's internal HZ.
const ClockTick = 10 * time.Millisecond

// ErrMalformed is returned for /proc content that cannot be read.
var ErrMalformed = errors.New("malformed /proc data")

// Stat is what the bench needs from one /proc/PID/stat line.
type Stat struct {
	// PID and PPID are the process and its parent.
	PID, PPID int
	// Comm is the command name, without its parentheses.
	Comm string
	// UTime and STime are the user and system time of all the process's
	// threads; CUTime and CSTime those of its reaped children.
	UTime, STime, CUTime, CSTime time.Duration
}

// CPU returns the process's own CPU time plus that of its reaped
// children, so that a sum over a process tree does not lose a worker that
// exits while it is measured.
func (s Stat) CPU() time.Duration { return s.UTime + s.STime + s.CUTime + s.CSTime }

// ParseStat reads a /proc/PID/stat line (proc(5)). The command name may
// hold spaces and parentheses, so the fields are counted from the last
// closing parenthesis.
func ParseStat(line []byte) (Stat, error) {
	open := bytes.IndexByte(line, '(')
	closing := bytes.LastIndexByte(line, ')')
	if open < 1 || closing < open {
		return Stat{}, fmt.Errorf("%w: no command name in stat line", ErrMalformed)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("%w: pid: %w", ErrMalformed, err)
	}

	// Fields from the state (field 3) on: utime is field 14, so index 11.
	rest := bytes.Fields(line[closing+1:])
	if len(rest) < 15 {
		return Stat{}, fmt.Errorf("%w: %d fields after the command name, want 15 or more",
			ErrMalformed, len(rest))
	}
	s := Stat{PID: pid, Comm: string(line[open+1 : closing])}
	if s.PPID, err = strconv.Atoi(string(rest[1])); err != nil {
		return Stat{}, fmt.Errorf("%w: ppid: %w", ErrMalformed, err)
	}
	for i, dst := range []*time.Duration{&s.UTime, &s.STime, &s.CUTime, &s.CSTime} {
		ticks, err := strconv.ParseInt(string(rest[11+i]), 10, 64)
		if err != nil || ticks < 0 {
			return Stat{}, fmt.Errorf("%w: cpu time field %d: %q", ErrMalformed, 14+i, rest[11+i])
		}
		*dst = time.Duration(ticks) * ClockTick
	}
	return s, nil
}

// Memory is a process's resident set, current and peak, in KiB.
type Memory struct {
	// RSSKiB is VmRSS: resident memory now.
	RSSKiB int64 `json:"rss_kib"`
	// HWMKiB is VmHWM: the peak resident memory since the process started.
	HWMKiB int64 `json:"hwm_kib"`
}

// ParseStatus reads VmRSS and VmHWM from /proc/PID/status. A process
// without them (a zombie, a kernel thread) is an error.
func ParseStatus(data []byte) (Memory, error) {
	var m Memory
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "VmRSS":
			dst = &m.RSSKiB
		case "VmHWM":
			dst = &m.HWMKiB
		default:
			continue
		}
		f := bytes.Fields(val)
		if len(f) != 2 || string(f[1]) != "kB" {
			return Memory{}, fmt.Errorf("%w: %s: %q", ErrMalformed, key, val)
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("%w: %s: %w", ErrMalformed, key, err)
		}
		*dst = n
		seen++
	}
	if seen != 2 {
		return Memory{}, fmt.Errorf("%w: no VmRSS and VmHWM in status", ErrMalformed)
	}
	return m, nil
}
