package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/serve"
)

// stopGrace is how long a child gets to exit after SIGTERM before its
// whole process group is killed.
const stopGrace = 5 * time.Second

// child is a process the bench started. The runner owns it and stops it
// before returning, whatever happened.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // cmd.Wait's result; read only after done
	release func()        // frees the port reserved for the child; may be nil
	forks   bool          // its process group outlives it when it dies (nginx)
	stopped bool
}

// pid is the child's process id, the root of its process tree.
func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// startChild starts argv with its output going to a log file in the
// runner's folder.
func (r *runner) startChild(name string, argv, env []string) (*child, error) {
	c, err := r.prepareChild(name, argv, env)
	if err != nil {
		return nil, err
	}
	c.cmd.Stdout = c.logFile
	return c, r.launch(c)
}

// startServer starts one of scrapebench's own servers and reads the
// [serve.Ready] line it prints once it listens; the rest of its stdout
// goes to its log.
func (r *runner) startServer(name string, argv []string, timeout time.Duration) (*child,
	*serve.Ready, error) {
	c, err := r.prepareChild(name, argv, nil)
	if err != nil {
		return nil, nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	if err := r.launch(c); err != nil {
		return nil, nil, err
	}

	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		lines <- line
		_, _ = io.Copy(c.logFile, br)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(timeout):
		return c, nil, fmt.Errorf("%s did not start within %v%s", name, timeout, c.logTail())
	}
	var ready serve.Ready
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Addr == "" {
		// Most likely it failed and exited: give it a moment to be reaped,
		// so that the error says how it ended.
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
		return c, nil, fmt.Errorf("%s did not announce its address (%s)%s", name, c.state(),
			c.logTail())
	}
	return c, &ready, nil
}

// state says whether c runs, or how it ended.
func (c *child) state() string {
	if !c.exited() {
		return "still running"
	}
	if c.waitErr != nil {
		return c.waitErr.Error()
	}
	return "exited with status 0"
}

func (r *runner) prepareChild(name string, argv, env []string) (*child, error) {
	logPath := filepath.Join(r.dir, "logs", name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	// A front's own children could hold its pipes open after it exits.
	cmd.WaitDelay = stopGrace
	return &child{name: name, cmd: cmd, logPath: logPath, logFile: f,
		done: make(chan struct{})}, nil
}

// launch starts c, registers it for the final cleanup and reaps it.
func (r *runner) launch(c *child) error {
	if err := c.cmd.Start(); err != nil {
		c.logFile.Close()
		return fmt.Errorf("starting %s (%s): %w", c.name, c.cmd.Path, err)
	}
	r.children = append(r.children, c)
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	return nil
}

// stop asks c's process group to terminate and kills the group after
// [stopGrace]. A forking child that died by itself has its group killed
// too: nginx workers outlive a master that did not stop them. It is
// idempotent, and only the runner's goroutine calls it.
func (c *child) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	switch {
	case !c.exited():
		_ = signalGroup(c.pid(), syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(stopGrace):
			_ = signalGroup(c.pid(), syscall.SIGKILL)
			<-c.done
		}
	case c.forks:
		_ = signalGroup(c.pid(), syscall.SIGKILL)
	}
	if c.release != nil {
		c.release()
	}
	c.logFile.Close()
}

// logTail returns the end of c's log, for an error message.
func (c *child) logTail() string {
	data, err := os.ReadFile(c.logPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	const keep = 1500
	if len(data) > keep {
		data = data[len(data)-keep:]
	}
	return "; its log (" + c.logPath + ") ends with:\n" + strings.TrimSpace(string(data))
}

// stopAll stops every child still running, the most recent first.
func (r *runner) stopAll() {
	cs := r.children
	r.children = nil
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].stop()
	}
}

// errExited is wrapped by the errors of a child that exited unasked.
var errExited = errors.New("exited")

// alive returns an error when c has exited.
func (c *child) alive() error {
	if !c.exited() {
		return nil
	}
	return fmt.Errorf("%s %w (%s)%s", c.name, errExited, c.state(), c.logTail())
}
