// Command demo shows mtls-metrics-proxy at work on this machine, with
// nothing but Go: it writes a throwaway PKI with dev-certs, starts the
// example daemon on a unix socket and the proxy in front of it, and then
// scrapes the proxy the way Prometheus would, with and without the right
// certificate. Run it through "make demo".
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"
)

//go:embed demo.toml
var configTemplate string

func main() {
	bin := flag.String("bin", "bin", "`directory` holding mtls-metrics-proxy and diagd")
	keep := flag.Bool("keep", false, "keep the proxy running after the checks, until Ctrl-C")
	flag.Parse()

	ok, err := run(*bin, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Println("\nsome checks FAILED")
		os.Exit(1)
	}
}

// demo holds what the running demo needs to know.
type demo struct {
	dir       string
	bin       string
	metrics   string // https://host:port of the metrics listener
	diag      string // http://host:port of the diag listener
	caPool    *x509.CertPool
	client    tls.Certificate
	otherCert tls.Certificate
}

func run(bin string, keep bool) (bool, error) {
	dir, err := os.MkdirTemp("", "mtls-metrics-proxy-demo-")
	if err != nil {
		return false, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	d := &demo{dir: dir, bin: bin}

	step("writing a throwaway PKI with dev-certs")
	if err := d.certs(); err != nil {
		return false, err
	}

	step("starting the example daemon (diag server on a unix socket)")
	sock := filepath.Join(dir, "diag.sock")
	daemon, err := d.start("diagd", "--listen", "unix://"+sock)
	if err != nil {
		return false, err
	}
	defer stop(daemon)
	if err := waitForFile(sock, 10*time.Second); err != nil {
		return false, fmt.Errorf("daemon did not start: %w", err)
	}

	step("starting mtls-metrics-proxy")
	cfgPath, err := d.writeConfig()
	if err != nil {
		return false, err
	}
	proxy, err := d.startProxy(cfgPath)
	if err != nil {
		return false, err
	}
	defer stop(proxy)
	fmt.Printf("  metrics listener: %s (mTLS)\n  diag listener:    %s (clear text)\n",
		d.metrics, d.diag)

	ok := d.checks()
	if keep {
		d.keepRunning()
	}
	return ok, nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func (d *demo) certs() error {
	other := filepath.Join(d.dir, "other-ca")
	for _, out := range []string{d.dir, other} {
		cmd := exec.Command(filepath.Join(d.bin, "mtls-metrics-proxy"), "dev-certs", "--out", out)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("dev-certs: %w", err)
		}
	}
	fmt.Printf("  trusted PKI in %s\n  a second, untrusted PKI in %s\n", d.dir, other)

	caPEM, err := os.ReadFile(filepath.Join(d.dir, "ca.pem"))
	if err != nil {
		return err
	}
	d.caPool = x509.NewCertPool()
	if !d.caPool.AppendCertsFromPEM(caPEM) {
		return errors.New("ca.pem holds no certificate")
	}
	d.client, err = tls.LoadX509KeyPair(filepath.Join(d.dir, "client.pem"),
		filepath.Join(d.dir, "client-key.pem"))
	if err != nil {
		return err
	}
	d.otherCert, err = tls.LoadX509KeyPair(filepath.Join(other, "client.pem"),
		filepath.Join(other, "client-key.pem"))
	return err
}

func (d *demo) writeConfig() (string, error) {
	t, err := template.New("config").Parse(configTemplate)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Dir string }{d.dir}); err != nil {
		return "", err
	}
	path := filepath.Join(d.dir, "proxy.toml")
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

func (d *demo) start(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(d.bin, name), args...)
	cmd.Stdout = io.Discard
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w (did make build run?)", name, err)
	}
	return cmd, nil
}

// startProxy runs the proxy and reads its JSON log until both listeners
// have reported their addresses.
func (d *demo) startProxy(cfgPath string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(d.bin, "mtls-metrics-proxy"), "run", "--config", cfgPath)
	logs, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the proxy: %w", err)
	}

	found := make(chan error, 1)
	go d.followLog(logs, found)
	select {
	case err := <-found:
		if err != nil {
			stop(cmd)
			return nil, err
		}
		return cmd, nil
	case <-time.After(15 * time.Second):
		stop(cmd)
		return nil, errors.New("the proxy did not report its listeners within 15s")
	}
}

// followLog echoes the proxy's log lines in short form and reports on found
// once both listener addresses are known.
func (d *demo) followLog(r io.Reader, found chan<- error) {
	sc := bufio.NewScanner(r)
	reported := false
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			fmt.Println("  proxy:", sc.Text())
			continue
		}
		fmt.Printf("  proxy log: [%v] %v%s\n", line["@level"], line["@message"], logDetail(line))
		if line["@message"] == "listening" {
			addr, _ := line["addr"].(string)
			switch line["listener"] {
			case "metrics":
				d.metrics = "https://" + addr
			case "diag":
				d.diag = "http://" + addr
			}
		}
		if !reported && d.metrics != "" && d.diag != "" {
			reported = true
			found <- nil
		}
	}
	if !reported {
		found <- errors.New("the proxy exited before it was listening")
	}
}

func logDetail(line map[string]any) string {
	var parts []string
	for _, k := range []string{"listener", "addr", "reason", "status", "target", "hint"} {
		if v, ok := line[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}

// checks runs the scrapes and reports each result; it returns whether all
// went as they should.
func (d *demo) checks() bool {
	all := true
	check := func(what string, err error) {
		mark := "ok  "
		if err != nil {
			mark = "FAIL"
			all = false
		}
		fmt.Printf("  [%s] %s", mark, what)
		if err != nil {
			fmt.Printf(": %v", err)
		}
		fmt.Println()
	}

	step("scraping with the trusted client certificate")
	body, err := d.get(d.metrics+"/metrics", &d.client)
	check("GET /metrics over mTLS answers 200", err)
	if err == nil {
		printSeries(body, 4)
	}

	step("what must be refused")
	_, err = d.get(d.metrics+"/metrics", nil)
	check("no client certificate: handshake refused", wantTLSFailure(err))
	_, err = d.get(d.metrics+"/metrics", &d.otherCert)
	check("certificate from another CA: handshake refused", wantTLSFailure(err))
	_, err = d.get(d.metrics+"/debug/pprof/", &d.client)
	check("GET /debug/pprof/ on the TLS port, even with a good certificate: 404",
		wantStatus(err, http.StatusNotFound))
	_, err = d.get(d.diag+"/metrics", nil)
	check("GET /metrics on the old diag address: 404", wantStatus(err, http.StatusNotFound))

	step("what the diag address still serves")
	_, err = d.get(d.diag+"/healthz", nil)
	check("GET /healthz on the diag address: 200", err)
	return all
}

// statusError is a response with an unexpected status.
type statusError struct{ code int }

func (e statusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

func (d *demo) get(url string, cert *tls.Certificate) ([]byte, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.caPool}}
	if cert != nil {
		// Present the certificate whatever CAs the proxy names, as curl
		// does; Go's default would send none for another CA's certificate,
		// and the demo would not show the proxy refusing it.
		c := *cert
		tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (
			*tls.Certificate, error) {
			return &c, nil
		}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, statusError{resp.StatusCode}
	}
	return body, nil
}

func wantStatus(err error, code int) error {
	var se statusError
	if errors.As(err, &se) && se.code == code {
		return nil
	}
	if err == nil {
		return errors.New("got 200")
	}
	return fmt.Errorf("want HTTP %d, got %w", code, err)
}

func wantTLSFailure(err error) error {
	if err == nil {
		return errors.New("the scrape succeeded")
	}
	var se statusError
	if errors.As(err, &se) {
		return fmt.Errorf("want a TLS failure, got %w", err)
	}
	fmt.Printf("         client saw: %v\n", err)
	return nil
}

func printSeries(body []byte, n int) {
	for line := range strings.Lines(string(body)) {
		if n == 0 {
			return
		}
		if !strings.HasPrefix(line, "#") && strings.HasPrefix(line, "diagd_") {
			fmt.Print("         ", line)
			n--
		}
	}
}

func (d *demo) keepRunning() {
	c := filepath.Join(d.dir, "client.pem")
	k := filepath.Join(d.dir, "client-key.pem")
	ca := filepath.Join(d.dir, "ca.pem")
	step("running until Ctrl-C; scrape it by hand:")
	fmt.Printf("  curl --cacert %s --cert %s --key %s %s/metrics\n", ca, c, k, d.metrics)
	fmt.Printf("  curl %s/healthz\n", d.diag)
	fmt.Printf("  config: %s\n", filepath.Join(d.dir, "proxy.toml"))

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	<-ctx.Done()
	fmt.Printf("\nstopping; the PKI stays in %s\n", d.dir)
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitForFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear within %s", path, timeout)
}
