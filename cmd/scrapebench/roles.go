package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/body"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/load"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/serve"
)

// newFlags returns a flag set that reports to stderr and does not exit.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("scrapebench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args; ok is false when the command must end with code.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return exitOK, true
}

func upstreamCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("upstream", stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on (loopback)")
	unix := fs.String("unix", "", "unix socket `path` to serve on as well")
	size := fs.String("body", "100KiB", "body `size`, such as 100KiB or 1MiB")
	gz := fs.Bool("gzip", false, "also serve a gzip body to scrapers that accept it")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return serveRole(ctx, fs.Name(), *size, *gz,
		serve.Options{Listen: *listen, Unix: *unix, Stdout: stdout}, stderr)
}

func directCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("direct", stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on (loopback)")
	size := fs.String("body", "100KiB", "body `size`, such as 100KiB or 1MiB")
	gz := fs.Bool("gzip", false, "also serve a gzip body to scrapers that accept it")
	files := &serve.TLSFiles{}
	fs.StringVar(&files.CA, "ca", "", "`file` of the CAs client certificates must chain to")
	fs.StringVar(&files.Cert, "cert", "", "server certificate `file` (PEM)")
	fs.StringVar(&files.Key, "key", "", "server private key `file` (PEM)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if files.CA == "" || files.Cert == "" || files.Key == "" {
		fmt.Fprintln(stderr, "scrapebench direct: --ca, --cert and --key are required")
		return exitUsage
	}
	return serveRole(ctx, fs.Name(), *size, *gz,
		serve.Options{Listen: *listen, TLS: files, Stdout: stdout}, stderr)
}

// serveRole generates the body and serves it until ctx is done.
func serveRole(ctx context.Context, name, size string, gz bool, o serve.Options,
	stderr io.Writer) int {
	n, err := body.ParseSize(size)
	if err != nil {
		fmt.Fprintf(stderr, "%s: --body: %v\n", name, err)
		return exitUsage
	}
	if o.Content, err = serve.NewContent(n, gz); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	if err := serve.Serve(ctx, o); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	return exitOK
}

func loadCmd(ctx context.Context, args []string, stdin io.Reader, stdout,
	stderr io.Writer) int {
	fs := newFlags("load", stderr)
	var c load.Config
	fs.StringVar(&c.URL, "url", "", "scrape `URL`, http:// or https://")
	fs.StringVar(&c.CAFile, "ca", "", "CA `file` that signed the server's certificate")
	fs.StringVar(&c.CertFile, "cert", "", "client certificate `file` (PEM)")
	fs.StringVar(&c.KeyFile, "key", "", "client private key `file` (PEM)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "number of scrapers, each with a connection")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "how long to scrape")
	fs.IntVar(&c.Count, "count", 0, "stop after this many scrapes instead (0: use --duration)")
	fs.BoolVar(&c.NewConn, "new-conn", false,
		"a new connection and full TLS handshake per scrape (no keep-alive, no resumption)")
	fs.BoolVar(&c.Gzip, "gzip", false, "send Accept-Encoding: gzip (default: identity)")
	fs.Int64Var(&c.ExpectBytes, "expect-bytes", 0,
		"body length every scrape must get (0: check Content-Length when sent)")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "bound on one scrape")
	sync := fs.Bool("sync", false,
		"after the warm-up, print \"ready\" and wait for a line on stdin before the timed part")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if c.Count > 0 && !flagSet(fs, "duration") {
		c.Duration = 0
	}

	res, err := runLoad(ctx, c, *sync, stdin, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "scrapebench load: %v\n", err)
		return exitError
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintf(stderr, "scrapebench load: writing the result: %v\n", err)
		return exitError
	}
	return exitOK
}

// runLoad warms the load up, waits for the go-ahead when sync is set, and
// runs it.
func runLoad(ctx context.Context, c load.Config, sync bool, stdin io.Reader,
	stdout io.Writer) (load.Result, error) {
	g, err := load.New(c)
	if err != nil {
		return load.Result{}, err
	}
	defer g.Close()
	if err := g.Warm(ctx); err != nil {
		return load.Result{}, err
	}
	if sync {
		if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
			return load.Result{}, fmt.Errorf("writing ready: %w", err)
		}
		if _, err := bufio.NewReader(stdin).ReadString('\n'); err != nil {
			return load.Result{}, fmt.Errorf("waiting for the start line: %w", err)
		}
	}
	res := g.Run(ctx)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("interrupted: %w", err)
	}
	return res, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
