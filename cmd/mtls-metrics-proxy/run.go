package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/proxy"
)

// newFlags returns a flag set that prints its usage to stderr and returns
// errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mtls-metrics-proxy %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and returns the exit status to use when the
// command must not go on: exitOK after --help, exitUsage on a mistake.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage, false
	}
	return 0, true
}

func runCmd(args []string, stderr io.Writer) int {
	fs := newFlags("run", "run --config FILE", stderr)
	config := fs.String("config", "", "configuration `file` (TOML)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *config == "" {
		fmt.Fprintln(stderr, "run: --config is required")
		fs.Usage()
		return exitUsage
	}

	cfg, err := proxy.Load(*config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	log := proxy.NewLogger(cfg.Log, stderr)
	p, err := proxy.New(cfg, log, proxy.WithBuildInfo(buildInfo()))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	if err := p.Listen(); err != nil {
		log.Error("cannot start", "err", err.Error())
		return exitError
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// Once draining, a second SIGTERM or Ctrl-C takes the default
		// action and ends the process at once.
		<-ctx.Done()
		stop()
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			// The proxy logs the outcome; a failed reload keeps the old
			// material, so there is nothing more to do here.
			_ = p.Reload()
		}
	}()

	if err := p.Serve(ctx); err != nil {
		return exitError
	}
	return exitOK
}

func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "check --config FILE", stderr)
	config := fs.String("config", "", "configuration `file` (TOML)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *config == "" {
		fmt.Fprintln(stderr, "check: --config is required")
		fs.Usage()
		return exitUsage
	}

	cfg, err := proxy.Load(*config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	p, err := proxy.New(cfg, proxy.NewLogger(proxy.Log{Level: "off"}, io.Discard))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	for _, w := range p.Warnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", *config)
	return exitOK
}
