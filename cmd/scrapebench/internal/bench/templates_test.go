package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// TestFrontConfigs renders every front's configuration, checks the
// settings that make it equivalent to the proxy, and, when the front is
// installed, has it check the file itself.
func TestFrontConfigs(t *testing.T) {
	dir := t.TempDir()
	pki, err := writePKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := frontData{Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2", CA: pki.CA,
		Cert: pki.Cert, Key: pki.Key, CertAndKey: pki.CertAndKey,
		PIDFile: filepath.Join(dir, "pid"), Temp: dir, Workers: 2, Pool: upstreamPool}

	tests := []struct {
		front string
		want  []string // fragments the file must hold
		parse func([]byte) error
		check []string // the front's own check command, after the binary
	}{
		{front: "proxy", want: []string{`listen_addr = "127.0.0.1:1"`,
			`url = "http://127.0.0.1:2"`, `level = "warn"`},
			parse: func(b []byte) error { var v map[string]any; return toml.Unmarshal(b, &v) }},
		{front: "proxy-unix", want: []string{`url = "unix:///run/daemon.sock"`},
			parse: func(b []byte) error { var v map[string]any; return toml.Unmarshal(b, &v) }},
		{front: "haproxy", want: []string{"nbthread 2", "verify required",
			"ssl-min-ver TLSv1.2", "deny_status 404", "deny_status 405"},
			check: []string{"-c", "-f"}},
		{front: "nginx", want: []string{"worker_processes 2;", "ssl_verify_client on;",
			"ssl_protocols TLSv1.2 TLSv1.3;", "keepalive 1024;", "return 405;", "return 404;"},
			check: []string{"-t", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c"}},
		{front: "caddy", want: []string{`"require_and_verify"`, `"protocol_min": "tls1.2"`,
			`"strict_sni_host": false`, `"max_idle_conns_per_host": 1024`},
			parse: func(b []byte) error { var v map[string]any; return json.Unmarshal(b, &v) },
			check: []string{"validate", "--config"}},
	}
	for _, tc := range tests {
		t.Run(tc.front, func(t *testing.T) {
			k := frontByName(tc.front)
			sub := t.TempDir()
			d := data
			if k.unixUpstream {
				d.UpstreamUnix = "/run/daemon.sock"
			}
			path, err := k.writeConfig(sub, d)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("configuration lacks %q:\n%s", w, b)
				}
			}
			if tc.parse != nil {
				if err := tc.parse(b); err != nil {
					t.Fatalf("configuration does not parse: %v\n%s", err, b)
				}
			}
			if tc.check != nil {
				selfCheck(t, k, append(tc.check, path), sub)
			}
		})
	}
}

// selfCheck runs a third-party front's own configuration check when it is
// installed. The proxy's configuration is checked by the smoke test,
// which runs it.
func selfCheck(t *testing.T, k *frontKind, args []string, dir string) {
	t.Helper()
	bin, err := lookProgram(k.program)
	if err != nil {
		t.Logf("%s not installed: its own check skipped", k.program)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if k.env != nil {
		cmd.Env = append(os.Environ(), k.env(dir)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
}
