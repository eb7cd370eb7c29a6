package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badConfig is a configuration file the proxy must refuse to start with.
type badConfig struct {
	name string
	// toml is the file; %[1]s is the CA file, %[2]s the server certificate,
	// %[3]s its key, %[4]s the metrics listener's address.
	toml string
	// want lists the problems the proxy must report: each is a key and
	// the start of the line it must name, and each must show up on a
	// stderr line of its own together with a piece of message.
	want []wantProblem
}

// wantProblem is one line of a start-up error report.
type wantProblem struct {
	key string
	// line is the 1-based line of the file the report must point at.
	line int
	msg  string
}

// c30Cases are the variants of case C30 that must stop the proxy.
var c30Cases = []badConfig{
	{
		name: "(a) misspelt key ca_cert",
		toml: `[metrics_service]
listen_addr = %[4]q
ca_cert = [%[1]q]
ca_certs = [%[1]q]

[[metrics_service.keypairs]]
cert_file = %[2]q
key_file = %[3]q

[upstream]
url = "http://127.0.0.1:9"
`,
		want: []wantProblem{
			{"metrics_service.ca_cert", 3, "unknown configuration key"},
		},
	},
	{
		name: "(b) listen_addr at the top level",
		toml: `listen_addr = %[4]q

[metrics_service]
ca_certs = [%[1]q]

[[metrics_service.keypairs]]
cert_file = %[2]q
key_file = %[3]q

[upstream]
url = "http://127.0.0.1:9"
`,
		want: []wantProblem{{"listen_addr", 1, "unknown configuration key"}},
	},
	{
		name: "(c) mtls without ca_certs",
		toml: `[metrics_service]
listen_addr = %[4]q
mtls = true

[[metrics_service.keypairs]]
cert_file = %[2]q
key_file = %[3]q

[upstream]
url = "http://127.0.0.1:9"
`,
		// The key is absent, so the report points at its section.
		want: []wantProblem{
			{"metrics_service.ca_certs", 1, "mtls is enabled but ca_certs is empty"},
		},
	},
	{
		name: "(d) mtls without keypairs, and an empty ca_certs",
		toml: `[metrics_service]
listen_addr = %[4]q
ca_certs = []

[upstream]
url = "http://127.0.0.1:9"
`,
		want: []wantProblem{
			{"metrics_service.keypairs", 1, "no keypairs"},
			{"metrics_service.ca_certs", 3, "ca_certs is empty"},
		},
	},
	{
		name: "(e) mtls as a string",
		toml: `[metrics_service]
listen_addr = %[4]q
mtls = "yes"
ca_certs = [%[1]q]

[[metrics_service.keypairs]]
cert_file = %[2]q
key_file = %[3]q

[upstream]
url = "http://127.0.0.1:9"
`,
		want: []wantProblem{{"metrics_service.mtls", 3, "type"}},
	},
	{
		name: "(h) listen_addr twice",
		toml: `[metrics_service]
listen_addr = %[4]q
ca_certs = [%[1]q]
listen_addr = %[4]q

[[metrics_service.keypairs]]
cert_file = %[2]q
key_file = %[3]q

[upstream]
url = "http://127.0.0.1:9"
`,
		want: []wantProblem{{"metrics_service.listen_addr", 4, "already been defined"}},
	},
}

// TestC30StartupConfigErrors runs the proxy with configurations it must
// refuse (case C30). It must exit non-zero and name each problem's key and
// line, one line per problem, before it opens any listener. The test holds
// the configured listen address itself: a proxy that bound its listener
// before checking the configuration would fail on "address already in
// use" instead, and log no configuration problem.
func TestC30StartupConfigErrors(t *testing.T) {
	k := newPKI(t)
	for _, tc := range c30Cases {
		t.Run(tc.name, func(t *testing.T) {
			held, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listening: %v", err)
			}
			t.Cleanup(func() { _ = held.Close() })

			content := fmt.Sprintf(tc.toml, k.ca, k.serverCert, k.serverKey,
				held.Addr().String())
			cfg := writeFile(t, "proxy.toml", content)
			code, stdout, stderr := runProxy(t, "run", "--config", cfg)
			if code <= 0 {
				t.Errorf("exit code %d, want a non-zero exit status", code)
			}

			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			for _, w := range tc.want {
				if !hasProblemLine(lines, cfg, w) {
					t.Errorf("no stderr line %q with key %s and %q", fmt.Sprintf("%s:%d: ",
						cfg, w.line), w.key, w.msg)
				}
			}
			if len(lines) != len(tc.want) {
				t.Errorf("%d lines on stderr, want one per problem (%d)",
					len(lines), len(tc.want))
			}
			for _, never := range []string{"address already in use", "listening"} {
				if strings.Contains(stderr+stdout, never) {
					t.Errorf("output mentions %q: the proxy touched its listener", never)
				}
			}
			if t.Failed() {
				t.Logf("config:\n%s\nstderr:\n%s\nstdout:\n%s", content, stderr, stdout)
			}
		})
	}
}

// hasProblemLine reports whether one of lines reports w: it starts with
// "file:line: " and names the key and the message.
func hasProblemLine(lines []string, file string, w wantProblem) bool {
	prefix := fmt.Sprintf("%s:%d: ", file, w.line)
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, w.key) &&
			strings.Contains(l, w.msg) {
			return true
		}
	}
	return false
}

// runProxy runs the proxy binary to its end and returns its exit code and
// output; a code of -1 means a signal ended it.
func runProxy(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	// A refusal takes milliseconds; a proxy still running after this long
	// has started despite the problems.
	const refuseTimeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), refuseTimeout)
	defer cancel()

	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, proxyBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running %s: %v", filepath.Base(proxyBin), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not exit within %v; it should have refused to start\n%s",
			filepath.Base(proxyBin), refuseTimeout, errOut.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}
