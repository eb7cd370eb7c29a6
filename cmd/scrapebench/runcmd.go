package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/bench"
)

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	var c bench.Config
	fs.BoolVar(&c.Quick, "quick", false,
		"a short smoke run: 1 round, 1 s loads, small bodies, 100 connections")
	fs.IntVar(&c.Rounds, "rounds", 0, "rounds of every (workload, front) pair (default 3, "+
		"1 with --quick)")
	fs.DurationVar(&c.Duration, "duration", 0, "length of every timed load (default: per "+
		"workload, 1.5-2.5 s; 1 s with --quick)")
	fronts := fs.String("fronts", "", "comma-separated fronts (default: "+
		"none,direct,proxy,haproxy,nginx,caddy; proxy-unix runs only when named)")
	workloads := fs.String("workloads", "", "comma-separated workloads (default all: "+
		"ka-small,ka-large,newconn,gzip,conns,single,memory)")
	fs.StringVar(&c.ProxyBin, "proxy-bin", "bin/mtls-metrics-proxy",
		"the mtls-metrics-proxy `binary` (make build writes it)")
	fs.StringVar(&c.JSONPath, "json", "bin/scrapebench-results.json",
		"`file` for the raw results as JSON (\"\" for none)")
	fs.BoolVar(&c.KeepTemp, "keep", false, "keep the folder of configurations and logs")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c.Fronts, c.Workloads = list(*fronts), list(*workloads)
	c.Stdout, c.Stderr = stdout, stderr

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "scrapebench run: finding its own binary: %v\n", err)
		return exitError
	}
	c.Self = self

	if _, err := bench.Run(ctx, c); err != nil {
		fmt.Fprintf(stderr, "scrapebench run: %v\n", err)
		if errors.Is(err, bench.ErrConfig) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// list splits a comma-separated flag value, dropping empty items.
func list(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
