//go:build !linux

package integration

import (
	"syscall"
	"testing"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// reservePort relies on Linux's bind rules for SO_REUSEADDR.
func reservePort(t testing.TB) string {
	t.Helper()
	t.Skip("reserving a port without listening needs Linux")
	return ""
}
