//go:build linux

package bench

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// supported says the bench can run here: it reads /proc.
const supported = true

// sysProcAttr puts a child in a process group of its own, so that stopping
// it reaches the workers it forks (nginx), and has the kernel kill it if
// the bench dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

// raiseNoFile lifts the soft limit on open files to the hard one, so that
// 1000 scrapers and every front's two sockets per scrape fit. Children
// inherit the limit: Go restores the original one in children only for
// programs that never set it themselves.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Cur, nil
}

// reservePort returns a free 127.0.0.1 address for a front that cannot
// report the port it bound, and keeps it so until release: a socket stays
// bound to it without listening, so the kernel hands the port to no one
// else, while the front, which sets SO_REUSEADDR as HAProxy, nginx and Go
// servers all do, can still bind and listen on it. Listening on port 0 and
// closing would race with every other program on the machine.
func reservePort() (addr string, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("reserving a port: %w", err)
	}
	release = func() { _ = syscall.Close(fd) }
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		release()
		return "", nil, fmt.Errorf("reserving a port: SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		release()
		return "", nil, fmt.Errorf("reserving a port: binding 127.0.0.1:0: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		release()
		return "", nil, fmt.Errorf("reserving a port: %w", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), release, nil
}
