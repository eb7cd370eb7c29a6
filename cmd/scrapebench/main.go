// Command scrapebench measures what an mTLS front costs a scrape: it runs a
// daemon's metrics endpoint, the direct mTLS server that is the limit,
// mtls-metrics-proxy, and HAProxy, nginx and Caddy when installed, each in
// a process of its own, loads them like Prometheus does, and prints one
// table of throughput, latency, errors and CPU time per scrape.
//
//	scrapebench run [--quick] [--fronts none,direct,proxy,...] [--rounds N]
//	scrapebench upstream --listen ADDR --body SIZE [--gzip]
//	scrapebench direct --listen ADDR --body SIZE --ca F --cert F --key F [--gzip]
//	scrapebench load --url URL [--ca F --cert F --key F] --concurrency N --duration D
//
// run is what "make bench" calls; it starts the other roles itself.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "upstream":
		return upstreamCmd(ctx, args[1:], stdout, stderr)
	case "direct":
		return directCmd(ctx, args[1:], stdout, stderr)
	case "load":
		return loadCmd(ctx, args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "scrapebench: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: scrapebench COMMAND [flags]

commands:
  run       run every workload against every front and print the table
  upstream  serve a daemon's /metrics in clear text (a role of run)
  direct    serve the same /metrics over mTLS in-process (a role of run)
  load      scrape a URL like Prometheus and report JSON (a role of run)

"scrapebench COMMAND --help" lists a command's flags.
`)
}
