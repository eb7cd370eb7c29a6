package procstat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// FS reads a proc file system. The zero value reads /proc.
type FS struct {
	// Root is the mount point; "" means /proc.
	Root string
}

func (p FS) path(parts ...string) string {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	return filepath.Join(append([]string{root}, parts...)...)
}

// Stat reads the stat line of pid.
func (p FS) Stat(pid int) (Stat, error) {
	data, err := os.ReadFile(p.path(strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	s, err := ParseStat(data)
	if err != nil {
		return Stat{}, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	return s, nil
}

// Tree returns the stat of pid and of every live process below it, pid
// first. A process that exits during the walk is left out; pid itself
// missing is an error.
func (p FS) Tree(pid int) ([]Stat, error) {
	root, err := p.Stat(pid)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(p.path())
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	children := map[int][]Stat{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		s, err := p.Stat(n)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			// It exited since the listing: before the open (ENOENT) or
			// between the open and the read (ESRCH).
			continue
		}
		if err != nil {
			return nil, err
		}
		children[s.PPID] = append(children[s.PPID], s)
	}

	tree := []Stat{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].PID]...)
	}
	return tree, nil
}

// TreeCPU returns the CPU time of pid and every process below it, each
// with its reaped children ([Stat.CPU]), and how many processes that was.
func (p FS) TreeCPU(pid int) (time.Duration, int, error) {
	tree, err := p.Tree(pid)
	if err != nil {
		return 0, 0, err
	}
	var total time.Duration
	for _, s := range tree {
		total += s.CPU()
	}
	return total, len(tree), nil
}

// Memory reads the resident set of pid.
func (p FS) Memory(pid int) (Memory, error) {
	data, err := os.ReadFile(p.path(strconv.Itoa(pid), "status"))
	if err != nil {
		return Memory{}, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	m, err := ParseStatus(data)
	if err != nil {
		return Memory{}, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	return m, nil
}

// TreeMemory sums the resident sets of pid and every process below it.
// Pages shared between them (nginx's master and workers) count once per
// process, so the sum is an upper bound of what the tree holds.
func (p FS) TreeMemory(pid int) (Memory, error) {
	tree, err := p.Tree(pid)
	if err != nil {
		return Memory{}, err
	}
	var sum Memory
	for _, s := range tree {
		m, err := p.Memory(s.PID)
		if err != nil {
			return Memory{}, err
		}
		sum.RSSKiB += m.RSSKiB
		sum.HWMKiB += m.HWMKiB
	}
	return sum, nil
}
