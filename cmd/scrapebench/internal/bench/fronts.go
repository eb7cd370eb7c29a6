package bench

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"
	"time"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// configTemplates are the fronts' configuration files; "json" quotes a
// string for JSON, TOML, nginx and HAProxy alike.
var configTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"json": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
}).ParseFS(templateFS, "templates/*.tmpl"))

// upstreamPool is the idle keep-alive connections to the upstream the
// third-party fronts may keep, per worker where that applies: more than
// the 1000 concurrent scrapers, so that none of them has to churn.
const upstreamPool = 1024

// frontKind is one kind of front the bench can put before the upstream.
type frontKind struct {
	// Name is the front's name in flags and tables.
	Name string
	// program is the third-party binary to look for; "" for the proxy and
	// scrapebench's own servers.
	program string
	// install says how to get program.
	install string
	// tls is false only for "none", the upstream scraped directly.
	tls bool
	// forwards is true for the fronts with an upstream hop.
	forwards bool
	// forks is true when the front serves from child processes.
	forks bool
	// proxy marks mtls-metrics-proxy itself; unixUpstream has it reach
	// the daemon over a unix socket instead of loopback TCP.
	proxy, unixUpstream bool
	// optional fronts run only when asked for by name.
	optional bool
	// template is the configuration file's template, "" for none.
	template string
	// versionArgs print the front's version.
	versionArgs []string
	// argv builds the command line from the binary, the configuration
	// file and the instance's folder; env adds to the environment.
	argv func(bin, config, dir string) []string
	env  func(dir string) []string
	// workers describes how many threads or processes serve, and pool
	// how the front keeps connections to the upstream.
	workers func(n int) string
	pool    string
}

// goWorkers describes a Go server left to its GOMAXPROCS default.
func goWorkers(n int) string { return fmt.Sprintf("GOMAXPROCS=%d (Go default)", n) }

var frontKinds = []*frontKind{
	{Name: "none", workers: goWorkers, pool: "-"},
	{Name: "direct", tls: true, workers: goWorkers, pool: "-"},
	{
		Name: "proxy", tls: true, forwards: true, proxy: true, template: "proxy.toml.tmpl",
		versionArgs: []string{"version"}, argv: proxyArgv,
		workers: goWorkers, pool: "built in (upstream package)",
	},
	{
		// The proxy reaching the same daemon over a unix socket: what an
		// operator gains by moving the diag server off TCP. Only when
		// named, since every other front reaches the daemon over TCP.
		Name: "proxy-unix", tls: true, forwards: true, proxy: true, unixUpstream: true,
		optional: true, template: "proxy.toml.tmpl", versionArgs: []string{"version"},
		argv: proxyArgv, workers: goWorkers, pool: "built in (upstream package), unix socket",
	},
	{
		Name: "haproxy", program: "haproxy", install: "apt-get install -y haproxy", tls: true,
		forwards: true, template: "haproxy.cfg.tmpl", versionArgs: []string{"-v"},
		argv:    func(bin, cfg, _ string) []string { return []string{bin, "-db", "-f", cfg} },
		workers: func(n int) string { return fmt.Sprintf("nbthread %d", n) },
		pool:    "http-reuse safe (default), idle pool unbounded",
	},
	{
		Name: "nginx", program: "nginx", install: "apt-get install -y nginx", tls: true,
		forwards: true, forks: true, template: "nginx.conf.tmpl", versionArgs: []string{"-v"},
		argv: func(bin, cfg, dir string) []string {
			return []string{bin, "-p", dir, "-c", cfg, "-e", filepath.Join(dir, "error.log")}
		},
		workers: func(n int) string { return fmt.Sprintf("worker_processes %d", n) },
		pool:    fmt.Sprintf("keepalive %d per worker", upstreamPool),
	},
	{
		Name: "caddy", program: "caddy", install: "apt-get install -y caddy", tls: true,
		forwards: true, template: "caddy.json.tmpl", versionArgs: []string{"version"},
		argv: func(bin, cfg, _ string) []string { return []string{bin, "run", "--config", cfg} },
		// Caddy keeps its data and autosaved config under these.
		env: func(dir string) []string {
			return []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
				"XDG_DATA_HOME=" + filepath.Join(dir, "data")}
		},
		workers: goWorkers,
		pool:    fmt.Sprintf("max_idle_conns_per_host %d", upstreamPool),
	},
}

// proxyArgv runs mtls-metrics-proxy with its configuration file.
func proxyArgv(bin, cfg, _ string) []string { return []string{bin, "run", "--config", cfg} }

// frontNames lists every front; defaultFrontNames leaves out the optional.
func frontNames() []string {
	out := make([]string, len(frontKinds))
	for i, k := range frontKinds {
		out[i] = k.Name
	}
	return out
}

func defaultFrontNames() []string {
	var out []string
	for _, k := range frontKinds {
		if !k.optional {
			out = append(out, k.Name)
		}
	}
	return out
}

func frontByName(name string) *frontKind {
	for _, k := range frontKinds {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// lookProgram finds a third-party front. Debian puts haproxy and nginx in
// /usr/sbin, which a user's $PATH may leave out.
func lookProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH or /usr/sbin: %w", name, exec.ErrNotFound)
}

// frontData fills a configuration template.
type frontData struct {
	// Upstream is the daemon's host:port; UpstreamUnix its socket, for
	// the fronts that reach it that way.
	Listen, Upstream string
	UpstreamUnix     string
	CA, Cert, Key    string
	CertAndKey       string
	PIDFile, Temp    string
	Workers, Pool    int
}

// writeConfig renders k's configuration into dir and returns its path.
func (k *frontKind) writeConfig(dir string, d frontData) (string, error) {
	var buf bytes.Buffer
	if err := configTemplates.ExecuteTemplate(&buf, k.template, d); err != nil {
		return "", fmt.Errorf("rendering the %s configuration: %w", k.Name, err)
	}
	path := filepath.Join(dir, strings.TrimSuffix(k.template, ".tmpl"))
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// version runs bin to learn its version; its first line, or why not.
func (k *frontKind) version(bin string) string {
	if k.versionArgs == nil {
		return "scrapebench, " + runtime.Version()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, k.versionArgs...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return fmt.Sprintf("unknown (%s: %v)", strings.Join(k.versionArgs, " "), err)
	}
	if i := strings.Index(line, " - "); i > 0 {
		line = line[:i] // HAProxy appends its web site
	}
	return strings.TrimSpace(line)
}
