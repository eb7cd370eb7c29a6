package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

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
// command must not go on: exitOK after --help, exitUsage on a mistake or a
// missing required flag.
func parseFlags(fs *flag.FlagSet, args []string, required ...string) (int, bool) {
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
	for _, name := range required {
		if fs.Lookup(name).Value.String() == "" {
			fmt.Fprintf(fs.Output(), "%s: --%s is required\n", fs.Name(), name)
			fs.Usage()
			return exitUsage, false
		}
	}
	return 0, true
}

func runCmd(args []string, stderr io.Writer) int {
	fs := newFlags("run", "run --config FILE", stderr)
	config := fs.String("config", "", "configuration `file` (TOML)")
	if code, ok := parseFlags(fs, args, "config"); !ok {
		return code
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
	fs := newFlags("check", "check --config FILE [--json]", stderr)
	config := fs.String("config", "", "configuration `file` (TOML)")
	asJSON := fs.Bool("json", false, "print the report as JSON, for tools")
	if code, ok := parseFlags(fs, args, "config"); !ok {
		return code
	}

	report, err := check(*config)
	if err != nil {
		if *asJSON {
			writeJSON(stdout, failedReport(*config, err))
		} else {
			fmt.Fprintln(stderr, err)
		}
		return exitError
	}
	if *asJSON {
		writeJSON(stdout, report)
	} else if err := report.WriteText(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	return exitOK
}

// check loads the configuration and its certificates exactly as run
// would, and describes what they would serve.
func check(path string) (proxy.Report, error) {
	cfg, err := proxy.Load(path)
	if err != nil {
		return proxy.Report{}, err
	}
	p, err := proxy.New(cfg, proxy.NewLogger(proxy.Log{Level: "off"}, io.Discard))
	if err != nil {
		return proxy.Report{}, err
	}
	return p.Report(time.Now()), nil
}

func failedReport(path string, err error) proxy.Report {
	if abs, aerr := filepath.Abs(path); aerr == nil {
		path = abs
	}
	r := proxy.Report{Config: path, Warnings: []string{}, CheckedAt: time.Now()}
	var probs *proxy.Problems
	if errors.As(err, &probs) {
		r.Problems = probs.List
	} else {
		r.Problems = []proxy.Problem{{Msg: err.Error()}}
	}
	return r
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
