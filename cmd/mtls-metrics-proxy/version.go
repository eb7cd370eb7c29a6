package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/proxy"
)

// version and commit are set at build time with -ldflags "-X main.version=...
// -X main.commit=..."; without them, commit comes from the Go toolchain's
// VCS stamp when there is one.
var (
	version = "dev"
	commit  = ""
)

// buildInfo returns the version and the commit the binary was built from.
func buildInfo() proxy.BuildInfo {
	if commit != "" {
		return proxy.BuildInfo{Version: version, Revision: commit}
	}
	commit, modified := "unknown", false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		commit += "-dirty"
	}
	return proxy.BuildInfo{Version: version, Revision: commit}
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "version", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	b := buildInfo()
	fmt.Fprintf(stdout, "mtls-metrics-proxy %s\ncommit: %s\ngo: %s %s/%s\n",
		b.Version, b.Revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
