package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
[metrics_service]
enabled = true
listen_addr = "0.0.0.0"
mtls = true
ca_certs = ["ca.pem"]

[[metrics_service.keypairs]]
cert_file = "server.pem"
key_file = "/etc/abs/server-key.pem"

[upstream]
url = "http://127.0.0.1:6060"

[diag]
listen_addr = "0.0.0.0:3000"
`

func TestParseGoodConfig(t *testing.T) {
	cfg, err := Parse("/etc/mmp/proxy.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}

	ms := cfg.MetricsService
	checks := []struct {
		name      string
		got, want any
	}{
		{"enabled", ms.Enabled, true},
		{"default port", ms.ListenAddr, "0.0.0.0:3081"},
		{"mtls", ms.MTLS, true},
		{"relative CA path", ms.CACerts[0], filepath.FromSlash("/etc/mmp/ca.pem")},
		{"relative cert path", ms.Keypairs[0].CertFile, filepath.FromSlash("/etc/mmp/server.pem")},
		{"absolute key path", ms.Keypairs[0].KeyFile, "/etc/abs/server-key.pem"},
		{"metrics path default", cfg.Upstream.MetricsPath, "/metrics"},
		{"upstream parsed", cfg.Upstream.Address.Addr, "127.0.0.1:6060"},
		{"timeout default", cfg.Upstream.Timeout.Duration, 10 * time.Second},
		{"log default", cfg.Log.Format, "text"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", cfg.Warnings)
	}
}

// TestParseProblems covers C30 and the rest of the rules a configuration
// must follow. Each case names the key, the line and a fragment of the
// message it must produce.
func TestParseProblems(t *testing.T) {
	const tail = `
[[metrics_service.keypairs]]
cert_file = "s.pem"
key_file = "k.pem"

[upstream]
url = "http://127.0.0.1:6060"
`
	tests := []struct {
		name    string
		config  string
		key     string
		line    int
		message string
	}{
		{
			name:    "C30a misspelt key",
			config:  "[metrics_service]\nca_cert = [\"ca.pem\"]\nca_certs = [\"ca.pem\"]\n" + tail,
			key:     "metrics_service.ca_cert",
			line:    2,
			message: `unknown configuration key (did you mean "metrics_service.ca_certs"?)`,
		},
		{
			name:    "C30b key outside its section",
			config:  "listen_addr = \":3081\"\n[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail,
			key:     "listen_addr",
			line:    1,
			message: "unknown configuration key",
		},
		{
			name:    "C30c mtls with empty ca_certs",
			config:  "[metrics_service]\nmtls = true\nca_certs = []\n" + tail,
			key:     "metrics_service.ca_certs",
			line:    3,
			message: "mtls is enabled but ca_certs is empty",
		},
		{
			name: "C30d mtls with no keypairs",
			config: "[metrics_service]\nca_certs = [\"ca.pem\"]\n" +
				"[upstream]\nurl = \"http://127.0.0.1:1\"\n",
			key:     "metrics_service.keypairs",
			line:    1,
			message: "no keypairs are configured",
		},
		{
			name:    "C30e mtls given as a string",
			config:  "[metrics_service]\nca_certs = [\"ca.pem\"]\nmtls = \"yes\"\n" + tail,
			key:     "metrics_service.mtls",
			line:    3,
			message: "incompatible types",
		},
		{
			name: "C30h duplicate key",
			config: "[metrics_service]\nlisten_addr = \":1\"\nlisten_addr = \":2\"\n" +
				"ca_certs = [\"ca.pem\"]\n" + tail,
			line:    3,
			message: "listen_addr",
		},
		{
			name:    "keys are case-sensitive",
			config:  "[metrics_service]\nca_certs = [\"ca.pem\"]\nMTLS = false\n" + tail,
			key:     "metrics_service.MTLS",
			line:    3,
			message: `did you mean "metrics_service.mtls"?`,
		},
		{
			name: "unknown key in a keypair",
			config: "[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail +
				"[[metrics_service.keypairs]]\ncert_file = \"a\"\nkey_file = \"b\"\n" +
				"password = \"x\"\n",
			key:     "metrics_service.keypairs.password",
			line:    13,
			message: "unknown configuration key",
		},
		{
			name: "keypair without key_file",
			config: "[metrics_service]\nca_certs = [\"ca.pem\"]\n" +
				"[[metrics_service.keypairs]]\ncert_file = \"s.pem\"\n" +
				"[upstream]\nurl = \"http://127.0.0.1:1\"\n",
			key:     "metrics_service.keypairs[0].key_file",
			line:    3,
			message: "required",
		},
		{
			name:    "integer duration",
			config:  "[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail + "timeout = 5\n",
			key:     "upstream.timeout",
			line:    10,
			message: `want a duration such as "10s"`,
		},
		{
			name:    "negative duration",
			config:  "[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail + "timeout = \"-1s\"\n",
			key:     "upstream.timeout",
			line:    10,
			message: "must be positive",
		},
		{
			name: "remote upstream without opt-in",
			config: "[metrics_service]\nca_certs = [\"ca.pem\"]\n" +
				"[[metrics_service.keypairs]]\ncert_file = \"s\"\nkey_file = \"k\"\n" +
				"[upstream]\nurl = \"http://192.0.2.7:9100\"\n",
			key:     "upstream.url",
			line:    7,
			message: "allow_remote",
		},
		{
			name:    "missing upstream",
			config:  "[diag]\nlisten_addr = \"127.0.0.1:3000\"\n",
			key:     "upstream.url",
			message: "required",
		},
		{
			name: "bad listen port",
			config: "[metrics_service]\nlisten_addr = \"127.0.0.1:99999\"\n" +
				"ca_certs = [\"ca.pem\"]\n" + tail,
			key:     "metrics_service.listen_addr",
			line:    2,
			message: "port",
		},
		{
			name:    "nothing to serve",
			config:  "[upstream]\nurl = \"http://127.0.0.1:6060\"\n",
			key:     "metrics_service.enabled",
			message: "nothing to serve",
		},
		{
			name: "bad metrics path",
			config: "[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail +
				"metrics_path = \"/metrics/\"\n",
			key:     "upstream.metrics_path",
			line:    10,
			message: "clean",
		},
		{
			name:    "bad log level",
			config:  "[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail + "[log]\nlevel = \"loud\"\n",
			key:     "log.level",
			line:    11,
			message: "unknown level",
		},
		{
			name:    "unknown section",
			config:  "[metrics_service]\nca_certs = [\"ca.pem\"]\n" + tail + "[metrics]\nport = 1\n",
			key:     "metrics",
			line:    10,
			message: "unknown configuration key",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/cfg/proxy.toml", []byte(tc.config))
			var probs *Problems
			if !errors.As(err, &probs) {
				t.Fatalf("want *Problems, got %v", err)
			}
			for _, p := range probs.List {
				if (tc.key == "" || p.Key == tc.key) && strings.Contains(p.Msg, tc.message) {
					if tc.line != 0 && p.Line != tc.line {
						t.Errorf("line: got %d, want %d", p.Line, tc.line)
					}
					return
				}
			}
			t.Fatalf("no problem with key %q and message %q in:\n%v", tc.key, tc.message, err)
		})
	}
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	cfg := "[metrics_service]\nmtls = true\nbogus = 1\n[log]\nformat = \"xml\"\n"
	_, err := Parse("/cfg/proxy.toml", []byte(cfg))
	var probs *Problems
	if !errors.As(err, &probs) {
		t.Fatalf("want *Problems, got %v", err)
	}
	// bogus, keypairs, ca_certs, upstream.url, log.format.
	if len(probs.List) != 5 {
		t.Fatalf("want 5 problems, got %d:\n%v", len(probs.List), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 5 {
		t.Fatalf("want one line per problem, got:\n%v", err)
	}
	want := "/cfg/proxy.toml:3: metrics_service.bogus: unknown"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("no line starts with %q", want)
	}
	// Problems come in the order of the file, those without a line last.
	for i := 1; i < len(probs.List); i++ {
		a, b := probs.List[i-1].Line, probs.List[i].Line
		if b != 0 && (a == 0 || a > b) {
			t.Errorf("problem on line %d listed after one on line %d", b, a)
		}
	}
}

func TestParseModes(t *testing.T) {
	tests := []struct {
		name         string
		config       string
		enabled      bool
		mtls         bool
		warning      string
		listen, diag string
	}{
		{
			name: "C30f mtls off with keypairs warns",
			config: "[metrics_service]\nmtls = false\nca_certs = [\"ca.pem\"]\n" +
				"[upstream]\nurl = \"unix:///run/d.sock\"\n",
			enabled: true,
			warning: "does NOT verify clients",
			listen:  ":3081",
		},
		{
			name: "C30g disabled",
			config: "[metrics_service]\nenabled = false\n[upstream]\nurl = \"http://localhost:1\"\n" +
				"[diag]\nlisten_addr = \"127.0.0.1:3000\"\n",
			diag: "127.0.0.1:3000",
		},
		{
			name: "no metrics_service section means disabled",
			config: "[upstream]\nurl = \"http://[::1]:6060\"\n" +
				"[diag]\nlisten_addr = \"127.0.0.1:3000\"\n",
			diag: "127.0.0.1:3000",
		},
		{
			name: "IPv6 listen address without port",
			config: "[metrics_service]\nlisten_addr = \"::1\"\nca_certs = [\"c\"]\n" +
				"[[metrics_service.keypairs]]\ncert_file = \"s\"\nkey_file = \"k\"\n" +
				"[upstream]\nurl = \"http://127.0.0.1:1\"\n",
			enabled: true,
			mtls:    true,
			listen:  "[::1]:3081",
		},
		{
			name: "remote upstream with opt-in",
			config: "[metrics_service]\nmtls = false\n" +
				"[upstream]\nurl = \"http://192.0.2.7:9100\"\nallow_remote = true\n",
			enabled: true,
			warning: "clear text",
			listen:  ":3081",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("/cfg/p.toml", []byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			ms := cfg.MetricsService
			if ms.Enabled != tc.enabled || ms.Enabled && ms.MTLS != tc.mtls {
				t.Errorf("enabled=%v mtls=%v, want %v %v", ms.Enabled, ms.MTLS, tc.enabled, tc.mtls)
			}
			if tc.enabled && ms.ListenAddr != tc.listen {
				t.Errorf("listen_addr %q, want %q", ms.ListenAddr, tc.listen)
			}
			if cfg.Diag.ListenAddr != tc.diag {
				t.Errorf("diag %q, want %q", cfg.Diag.ListenAddr, tc.diag)
			}
			joined := strings.Join(cfg.Warnings, "\n")
			if tc.warning == "" && joined != "" || !strings.Contains(joined, tc.warning) {
				t.Errorf("warnings %q, want one containing %q", joined, tc.warning)
			}
		})
	}
}

func TestConfigKeysCoverEveryField(t *testing.T) {
	keys := configKeys()
	for _, k := range []string{
		"shutdown_timeout", "metrics_service", "metrics_service.enabled",
		"metrics_service.keypairs", "metrics_service.keypairs.cert_file",
		"upstream.url", "upstream.allow_remote", "diag.listen_addr", "log.format",
	} {
		if !keys[k] {
			t.Errorf("configKeys lacks %q", k)
		}
	}
	if keys["upstream.address"] || keys["file"] {
		t.Error("configKeys lists a field that is not read from the file")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(goodConfig)
	f.Add("[metrics_service]\nca_cert = [\"a\"]\n")
	f.Add("a = '''\n[x]\n'''\nb = [\n1,\n]\n[[t]]\nk = \"#\"\n")
	f.Add("x = { a = 1, b = [2, 3] }\n\"q.k\" = 1\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse("/cfg/p.toml", []byte(doc))
		if err != nil {
			var probs *Problems
			if !errors.As(err, &probs) || len(probs.List) == 0 {
				t.Fatalf("error is not a non-empty *Problems: %v", err)
			}
			for _, p := range probs.List {
				if p.Line < 0 || p.Line > strings.Count(doc, "\n")+1 {
					t.Fatalf("line %d out of range for %q", p.Line, p.Key)
				}
			}
			return
		}
		// A config that loads is one the proxy can act on safely.
		ms := cfg.MetricsService
		if ms.Enabled && ms.MTLS && (len(ms.CACerts) == 0 || len(ms.Keypairs) == 0) {
			t.Fatal("mTLS accepted without CAs or keypairs")
		}
		if !cfg.Upstream.Address.IsLocal() && !cfg.Upstream.AllowRemote {
			t.Fatal("remote upstream accepted without allow_remote")
		}
	})
}

func FuzzLocateKeys(f *testing.F) {
	f.Add(goodConfig)
	f.Add("a.\"b.c\" = 1\n[ x . 'y' ]\nz = \"\"\"\nq = 1\n\"\"\"\n")
	f.Fuzz(func(t *testing.T, doc string) {
		n := strings.Count(doc, "\n") + 1
		for k, line := range locateKeys([]byte(doc)) {
			if line < 1 || line > n {
				t.Fatalf("key %q on line %d of %d", k, line, n)
			}
		}
	})
}

func TestLocateKeys(t *testing.T) {
	doc := `# comment
top = 1
[a]
b = """
c = "not a key"
"""
d = [
  "e = 1",
]
f.g = 2 # h = 3
[[arr]]
x = 1
[[arr]]
x = 2
["quoted.table"]
y = 'z = 4'
`
	want := map[string]int{
		"top": 2, "a": 3, "a.b": 4, "a.d": 7, "a.f.g": 10,
		"arr": 11, "arr[0]": 11, "arr[0].x": 12, "arr[1]": 13, "arr[1].x": 14, "arr.x": 12,
		"quoted.table.y": 16,
	}
	got := locateKeys([]byte(doc))
	for k, line := range want {
		if got[k] != line {
			t.Errorf("%s: line %d, want %d", k, got[k], line)
		}
	}
	for _, k := range []string{"a.c", "a.e", "a.h", "z"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is inside a string or comment but was located", k)
		}
	}
}

// TestREADMEDocumentsEveryKey fails when a configuration key is missing
// from the README's configuration reference.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(readme), "## Configuration reference")
	if !ok {
		t.Fatal("README has no \"## Configuration reference\" section")
	}
	ref, _, _ = strings.Cut(ref, "\n## ")
	for key := range configKeys() {
		if !strings.Contains(ref, "`"+key+"`") && !strings.Contains(ref, "`["+key+"]`") &&
			!strings.Contains(ref, "`[["+key+"]]`") {
			t.Errorf("README's configuration reference lacks `%s`", key)
		}
	}
}
