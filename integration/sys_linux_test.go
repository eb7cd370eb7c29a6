//go:build linux

package integration

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// sysProcAttr makes the kernel kill a started program when the test binary
// dies, so that a test killed by its timeout leaves no Prometheus behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// reservePort returns a 127.0.0.1 address on which nothing listens, and
// keeps it so until the test ends: it holds a socket bound to the port but
// not listening, so that connections are refused and no other program is
// handed the port. A server that sets SO_REUSEADDR (every Go server does)
// can still bind and listen on it later. This avoids picking a port by
// listening and closing, which races with every other process on the host.
func reservePort(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("creating socket: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })

	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatalf("setting SO_REUSEADDR: %v", err)
	}
	loopback := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Bind(fd, loopback); err != nil {
		t.Fatalf("binding 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("reading bound address: %v", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
