//go:build !linux

package bench

import (
	"errors"
	"syscall"
)

// supported says the bench cannot run here: it reads Linux's /proc.
const supported = false

var errUnsupported = errors.New("scrapebench run needs Linux (/proc)")

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(int, syscall.Signal) error { return errUnsupported }

func raiseNoFile() (uint64, error) { return 0, errUnsupported }

func reservePort() (string, func(), error) { return "", nil, errUnsupported }
