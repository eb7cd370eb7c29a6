// Command mtls-metrics-proxy moves a daemon's /metrics onto a listener of
// its own that requires client certificates, and keeps the rest of the
// daemon's diag server where it was.
//
// Usage:
//
//	mtls-metrics-proxy run --config FILE
//	mtls-metrics-proxy check --config FILE
//	mtls-metrics-proxy dev-certs --out DIR
//	mtls-metrics-proxy version
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: mtls-metrics-proxy COMMAND [FLAGS]

Commands:
  run --config FILE      serve until SIGTERM or SIGINT; SIGHUP reloads certificates
  check --config FILE    validate a configuration and its certificates, and
                         print what it would serve (--json for tools)
  dev-certs --out DIR    write a throwaway CA with server and client keypairs
  version                print version, commit and Go version

Run "mtls-metrics-proxy COMMAND --help" for a command's flags.
`

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}

	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(rest, stderr)
	case "check":
		return checkCmd(rest, stdout, stderr)
	case "dev-certs":
		return devCertsCmd(rest, stdout, stderr)
	case "version", "--version":
		return versionCmd(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mtls-metrics-proxy: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}
