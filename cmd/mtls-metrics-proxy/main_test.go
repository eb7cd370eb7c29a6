package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"no command", nil, exitUsage, "", "Usage: mtls-metrics-proxy COMMAND"},
		{"unknown command", []string{"serve"}, exitUsage, "", `unknown command "serve"`},
		{"help", []string{"--help"}, exitOK, "dev-certs --out DIR", ""},
		{"version", []string{"version"}, exitOK, "go: go1.", ""},
		{"run without config", []string{"run"}, exitUsage, "", "--config is required"},
		{"run help", []string{"run", "--help"}, exitOK, "", "-config file"},
		{"run stray argument", []string{"run", "--config", "x", "y"}, exitUsage, "",
			`unexpected argument "y"`},
		{"run missing file", []string{"run", "--config", filepath.Join(dir, "nope.toml")},
			exitError, "", "no such file"},
		{"check without config", []string{"check"}, exitUsage, "", "--config is required"},
		{"dev-certs without out", []string{"dev-certs"}, exitUsage, "", "--out is required"},
		{"check help", []string{"check", "--help"}, exitOK, "", "-json"},
		{"dev-certs help", []string{"dev-certs", "--help"}, exitOK, "", "-hosts"},
		{"version help", []string{"version", "--help"}, exitOK, "", "Usage: mtls-metrics-proxy version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tc.out)
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.err)
			}
		})
	}
}

func TestDevCertsThenCheck(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"dev-certs", "--out", dir}, &stdout, &stderr); code != exitOK {
		t.Fatalf("dev-certs: exit %d: %s", code, stderr.String())
	}

	for name, mode := range map[string]os.FileMode{
		"ca.pem": 0o644, "server.pem": 0o644, "server-key.pem": 0o600,
		"client.pem": 0o644, "client-key.pem": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", name, fi.Mode().Perm(), mode)
		}
	}

	// The client certificate verifies against the CA for client auth, and
	// the server certificate for the default hosts.
	ca := loadPool(t, filepath.Join(dir, "ca.pem"))
	for _, kp := range []struct {
		name  string
		usage x509.ExtKeyUsage
		host  string
	}{
		{"client", x509.ExtKeyUsageClientAuth, ""},
		{"server", x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"server", x509.ExtKeyUsageServerAuth, "localhost"},
	} {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, kp.name+".pem"),
			filepath.Join(dir, kp.name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = pair.Leaf.Verify(x509.VerifyOptions{Roots: ca, DNSName: kp.host,
			KeyUsages: []x509.ExtKeyUsage{kp.usage}})
		if err != nil {
			t.Errorf("%s %s: %v", kp.name, kp.host, err)
		}
	}

	if code := dispatch([]string{"dev-certs", "--out", dir}, &stdout, &stderr); code != exitError ||
		!strings.Contains(stderr.String(), "already exists") {
		t.Errorf("second dev-certs: exit %d, stderr %q; want a refusal to overwrite",
			code, stderr.String())
	}

	cfg := filepath.Join(dir, "proxy.toml")
	err := os.WriteFile(cfg, []byte(`
[metrics_service]
ca_certs = ["ca.pem"]
[[metrics_service.keypairs]]
cert_file = "server.pem"
key_file = "server-key.pem"
[upstream]
url = "http://127.0.0.1:6060"
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := dispatch([]string{"check", "--config", cfg}, &stdout, &stderr); code != exitOK {
		t.Fatalf("check: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "configuration OK") {
		t.Errorf("check printed %q", stdout.String())
	}
}

func TestCheckReportsProblems(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "proxy.toml")
	if err := os.WriteFile(cfg, []byte("[metrics_service]\nca_cert = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"check", "--config", cfg}, &stdout, &stderr)
	if code != exitError {
		t.Fatalf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(stderr.String(), cfg+":2: metrics_service.ca_cert: unknown") {
		t.Errorf("stderr %q does not name the key and line", stderr.String())
	}
}

func loadPool(t testing.TB, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no certificate", path)
	}
	return pool
}
