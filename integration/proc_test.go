package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts sized for a loaded two-core machine: waits are long, polls are
// short, so that a fast machine is not slowed down.
const (
	waitTimeout  = 60 * time.Second
	pollInterval = 50 * time.Millisecond
	stopTimeout  = 10 * time.Second
)

// proc is a program a test started. The test owns it: a cleanup stops it,
// and when the test failed, logs what it wrote on stdout and stderr.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *lineBuffer
	stderr *lineBuffer

	done    chan struct{} // closed once the process has been reaped
	waitErr error         // cmd.Wait's result; read only after done
}

// startProc starts bin with args and registers its cleanup.
func startProc(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{
		name:   name,
		cmd:    exec.Command(bin, args...),
		stdout: &lineBuffer{},
		stderr: &lineBuffer{},
		done:   make(chan struct{}),
	}
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = sysProcAttr()
	// Nothing the tests start spawns children that hold the pipes, but
	// bound the wait for the output copiers all the same.
	p.cmd.WaitDelay = 5 * time.Second

	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()

	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// stop asks the process to terminate, and kills it if it does not.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// dump writes everything the process printed into the test log.
func (p *proc) dump(t testing.TB) {
	t.Helper()
	for _, s := range []struct {
		name string
		buf  *lineBuffer
	}{{"stdout", p.stdout}, {"stderr", p.stderr}} {
		if text := s.buf.String(); text != "" {
			t.Logf("--- %s %s (pid %d):\n%s", p.name, s.name, p.cmd.Process.Pid, text)
		}
	}
}

// signal sends sig to the process, failing the test if that is impossible.
func (p *proc) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to %s: %v", sig, p.name, err)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to timeout for the process to end and returns its exit
// code; -1 means it was ended by a signal. The test fails on timeout.
func (p *proc) waitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running %v after it should have exited", p.name, timeout)
	}

	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		t.Fatalf("waiting for %s: %v", p.name, p.waitErr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitLine waits for a line on buf that match accepts and returns it. It
// fails the test if the process exits or the wait times out first.
func (p *proc) waitLine(t testing.TB, buf *lineBuffer, what string,
	match func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for next := 0; ; {
		// Read the state before the lines, so that a line written just
		// before the exit is still seen.
		exited := p.exited()
		lines := buf.Lines()
		for ; next < len(lines); next++ {
			if match(lines[next]) {
				return lines[next]
			}
		}
		switch {
		case exited:
			t.Fatalf("%s exited (%v) before logging %s", p.name, p.waitErr, what)
		case time.Now().After(deadline):
			t.Fatalf("%s did not log %s within %v", p.name, what, waitTimeout)
		}
		time.Sleep(pollInterval / 5)
	}
}

// logEntry is one line of the proxy's JSON log.
type logEntry map[string]any

// str returns the string value of key, or "" when it is missing.
func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

// jsonLines returns the lines of buf that are JSON objects, decoded.
func jsonLines(buf *lineBuffer) []logEntry {
	var out []logEntry
	for _, l := range buf.Lines() {
		var e logEntry
		if json.Unmarshal([]byte(l), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// waitLog waits for a JSON line on stderr that match accepts.
func (p *proc) waitLog(t testing.TB, what string, match func(logEntry) bool) logEntry {
	t.Helper()
	line := p.waitLine(t, p.stderr, what, func(l string) bool {
		var e logEntry
		return json.Unmarshal([]byte(l), &e) == nil && match(e)
	})
	var e logEntry
	_ = json.Unmarshal([]byte(line), &e)
	return e
}

// lineBuffer collects a process's output and hands it out in whole lines.
// It is safe for concurrent use: the exec package writes, tests read.
type lineBuffer struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
}

// Lines returns the complete lines written so far.
func (b *lineBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

// String returns everything written so far, an unfinished line included.
func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(b.lines, "\n")
	if len(b.partial) > 0 {
		s += "\n" + string(b.partial)
	}
	return s
}

// eventually calls check every poll interval until it returns nil. After
// timeout it fails the test with check's last error, which should say what
// state was seen instead of the one wanted.
func eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; last seen: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}
