package integration

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"
)

// exampleKind says which test checks a file under examples/.
type exampleKind string

// The kinds of example files. Every file under examples/ must be one of
// them, so that a new example cannot go unchecked.
const (
	kindProxyConfig exampleKind = "proxy config"
	kindPrometheus  exampleKind = "Prometheus config"
	kindKubernetes  exampleKind = "Kubernetes manifests"
	kindCompose     exampleKind = "compose file"
	kindSystemd     exampleKind = "systemd unit"
	kindSysusers    exampleKind = "sysusers.d entry"
	// kindGo is code: the Go toolchain builds and vets it.
	kindGo exampleKind = "Go code"
)

// exampleFile is one file under examples/.
type exampleFile struct {
	// rel is the path relative to the repository's root, with slashes.
	rel string
	// path is the absolute path.
	path string
	kind exampleKind
}

// repoRoot returns the repository's root: go test runs in integration/.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatalf("finding the repository's root: %v", err)
	}
	return root
}

// exampleFiles walks examples/ and classifies every file in it; a file of
// no known kind gets the kind "". A file that cannot be parsed fails the
// test.
func exampleFiles(t testing.TB) []exampleFile {
	t.Helper()
	root := repoRoot(t)
	var files []exampleFile
	err := filepath.WalkDir(filepath.Join(root, "examples"),
		func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			// Keypairs that dev-certs wrote into an example's folder
			// (compose mounts ./pki) are local material, not examples.
			if strings.HasSuffix(rel, ".pem") {
				return nil
			}
			kind, err := classifyExample(path)
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				return nil
			}
			files = append(files, exampleFile{rel: rel, path: path, kind: kind})
			return nil
		})
	if err != nil {
		t.Fatalf("walking examples/: %v", err)
	}
	return files
}

// classifyExample tells an example's kind by its name and, for YAML, by
// its top-level keys; "" means no test knows the file.
func classifyExample(path string) (exampleKind, error) {
	switch filepath.Ext(path) {
	case ".go":
		return kindGo, nil
	case ".toml":
		return kindProxyConfig, nil
	case ".service":
		return kindSystemd, nil
	case ".sysusers":
		return kindSysusers, nil
	case ".yml", ".yaml":
		return classifyYAML(path)
	}
	return "", nil
}

// classifyYAML tells a Prometheus config (scrape_configs), a compose file
// (services) and Kubernetes manifests (apiVersion and kind) apart.
func classifyYAML(path string) (exampleKind, error) {
	docs, err := yamlDocuments(path)
	if err != nil {
		return "", err
	}
	if len(docs) == 0 {
		return "", nil
	}
	var top map[string]any
	if err := docs[0].Decode(&top); err != nil {
		return "", err
	}
	switch {
	case top["scrape_configs"] != nil:
		return kindPrometheus, nil
	case top["services"] != nil:
		return kindCompose, nil
	case top["apiVersion"] != nil && top["kind"] != nil:
		return kindKubernetes, nil
	}
	return "", nil
}

// yamlDocuments parses every document of a YAML file.
func yamlDocuments(path string) ([]*yaml.Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var docs []*yaml.Node
	dec := yaml.NewDecoder(f)
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &n)
	}
}

// examplesOf returns the example files of one kind, failing the test when
// there are none: the walk found nothing to check.
func examplesOf(t testing.TB, kind exampleKind) []exampleFile {
	t.Helper()
	var out []exampleFile
	for _, f := range exampleFiles(t) {
		if f.kind == kind {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s found under examples/", kind)
	}
	return out
}

// TestExampleEveryFileIsChecked fails for a file under examples/ that no
// test knows how to check, and lists what each test will check.
func TestExampleEveryFileIsChecked(t *testing.T) {
	for _, f := range exampleFiles(t) {
		if f.kind == "" {
			t.Errorf("%s: no test checks this kind of example; "+
				"teach integration/examples_test.go about it", f.rel)
			continue
		}
		t.Logf("%-45s %s", f.rel, f.kind)
	}
}

// proxyConfigSource is one proxy configuration found in the examples: a
// TOML file, or the TOML held by a Kubernetes ConfigMap.
type proxyConfigSource struct {
	// name says where the config comes from, e.g. a file or a file and
	// a ConfigMap key.
	name string
	toml string
}

// exampleProxyConfigs returns every proxy configuration in examples/.
func exampleProxyConfigs(t testing.TB) []proxyConfigSource {
	t.Helper()
	var out []proxyConfigSource
	for _, f := range exampleFiles(t) {
		switch f.kind {
		case kindProxyConfig:
			b, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, proxyConfigSource{name: f.rel, toml: string(b)})
		case kindKubernetes:
			for _, cm := range configMapsIn(t, f.path) {
				for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
					if strings.HasSuffix(key, ".toml") {
						name := f.rel + ":" + cm.Metadata.Name + "/" + key
						out = append(out, proxyConfigSource{name: name, toml: cm.Data[key]})
					}
				}
			}
		}
	}
	return out
}

// TestExampleProxyConfigsPassCheck runs "mtls-metrics-proxy check" on
// every proxy config in the examples, with certificate paths pointed at
// files from dev-certs. Everything else, upstream URLs included, is
// checked as written.
func TestExampleProxyConfigsPassCheck(t *testing.T) {
	configs := exampleProxyConfigs(t)
	if len(configs) == 0 {
		t.Fatal("no proxy config found under examples/")
	}
	k := newPKI(t)
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			doc := decodeProxyConfig(t, c.toml)
			pointAtPKI(t, doc, k)
			if code, out := checkConfig(t, doc); code != 0 {
				t.Fatalf("check exited %d:\n%s", code, out)
			}
		})
	}
}

// decodeProxyConfig parses a config. A config with {{.Dir}} is a template
// (examples/demo fills in its temporary folder) and is filled in first.
func decodeProxyConfig(t testing.TB, text string) map[string]any {
	t.Helper()
	if strings.Contains(text, "{{") {
		tmpl, err := template.New("config").Parse(text)
		if err != nil {
			t.Fatalf("parsing the config as a template: %v", err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, struct{ Dir string }{t.TempDir()}); err != nil {
			t.Fatalf("filling in the config template: %v", err)
		}
		text = b.String()
	}
	doc := map[string]any{}
	if _, err := toml.Decode(text, &doc); err != nil {
		t.Fatalf("parsing the config: %v", err)
	}
	return doc
}

// pointAtPKI replaces the certificate paths of a config with the dev-certs
// files: every CA with the CA, every keypair with the server keypair.
func pointAtPKI(t testing.TB, doc map[string]any, k pki) {
	t.Helper()
	ms, ok := doc["metrics_service"].(map[string]any)
	if !ok {
		return
	}
	if _, ok := ms["crl_files"]; ok {
		t.Fatal("crl_files: dev-certs writes no CRL; teach this test where to get one")
	}
	if _, ok := ms["ca_certs"]; ok {
		ms["ca_certs"] = []string{k.ca}
	}
	kps, _ := ms["keypairs"].([]map[string]any)
	for _, kp := range kps {
		kp["cert_file"], kp["key_file"] = k.serverCert, k.serverKey
	}
}

// checkConfig writes the config to a temporary file and runs check on it,
// returning the exit code and the output.
func checkConfig(t testing.TB, doc map[string]any) (int, string) {
	t.Helper()
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		t.Fatalf("encoding the config: %v", err)
	}
	path := writeFile(t, "proxy.toml", b.String())
	code, stdout, stderr := runProxy(t, "check", "--config", path)
	return code, stdout + stderr + "\nthe file checked:\n" + b.String()
}

// tlsFileKeys are the keys of a Prometheus tls_config that name files, and
// the dev-certs file each one gets in the copy promtool checks.
var tlsFileKeys = map[string]func(pki) string{
	"ca_file":   func(k pki) string { return k.ca },
	"cert_file": func(k pki) string { return k.clientCert },
	"key_file":  func(k pki) string { return k.clientKey },
}

// TestExamplePrometheusConfigsPassPromtool runs "promtool check config" on
// every Prometheus config in the examples. promtool checks that the TLS
// files exist, so a copy with them pointed at dev-certs files is checked.
// Every job must scrape over https with a client certificate: that is
// what the proxy asks of Prometheus.
func TestExamplePrometheusConfigsPassPromtool(t *testing.T) {
	promtool := requireProgram(t, "promtool")
	k := newPKI(t)
	hasK8sSD := promtoolKnowsKubernetesSD(t, promtool)
	for _, f := range examplesOf(t, kindPrometheus) {
		t.Run(f.rel, func(t *testing.T) {
			docs, err := yamlDocuments(f.path)
			if err != nil || len(docs) != 1 {
				t.Fatalf("want one YAML document, got %d: %v", len(docs), err)
			}
			checkScrapeConfigsUseMTLS(t, docs[0])
			rewriteTLSFiles(docs[0], k)
			replaced := !hasK8sSD && replaceKubernetesSD(docs[0])
			promtoolCheckConfig(t, promtool, filepath.Base(f.path), docs[0])
			if replaced {
				t.Skip("this promtool has no Kubernetes service discovery (Debian " +
					"builds it without); checked with kubernetes_sd_configs replaced " +
					"by static_configs, so the rest of each job is checked")
			}
		})
	}
}

// promtoolCheckConfig writes a Prometheus config to a temporary file and
// fails the test unless promtool accepts it.
func promtoolCheckConfig(t testing.TB, promtool, name string, doc *yaml.Node) {
	t.Helper()
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, name, string(out))
	res, err := exec.Command(promtool, "check", "config", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s\nthe file checked:\n%s", err, res, out)
	}
}

// promtoolKnowsKubernetesSD reports whether promtool accepts a minimal
// config with Kubernetes service discovery.
func promtoolKnowsKubernetesSD(t testing.TB, promtool string) bool {
	t.Helper()
	file := writeFile(t, "k8s-sd.yml", `scrape_configs:
  - job_name: probe
    kubernetes_sd_configs:
      - role: endpoints
`)
	out, err := exec.Command(promtool, "check", "config", file).CombinedOutput()
	if err != nil {
		t.Logf("promtool refuses kubernetes_sd_configs: %v\n%s", err, out)
	}
	return err == nil
}

// replaceKubernetesSD turns every kubernetes_sd_configs of a config into
// static_configs with a loopback target, and reports whether it found any.
func replaceKubernetesSD(n *yaml.Node) bool {
	found := false
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value != "kubernetes_sd_configs" {
				continue
			}
			var static yaml.Node
			// Encoding a literal list of maps cannot fail.
			_ = static.Encode([]map[string][]string{{"targets": {"127.0.0.1:3081"}}})
			n.Content[i].Value, n.Content[i+1] = "static_configs", &static
			found = true
		}
	}
	for _, c := range n.Content {
		found = replaceKubernetesSD(c) || found
	}
	return found
}

// promScrapeConfig is what the tests read of a Prometheus scrape config.
type promScrapeConfig struct {
	JobName   string `yaml:"job_name"`
	Scheme    string `yaml:"scheme"`
	TLSConfig struct {
		CAFile     string `yaml:"ca_file"`
		CertFile   string `yaml:"cert_file"`
		KeyFile    string `yaml:"key_file"`
		ServerName string `yaml:"server_name"`
	} `yaml:"tls_config"`
	KubernetesSDConfigs []struct {
		Role string `yaml:"role"`
	} `yaml:"kubernetes_sd_configs"`
	RelabelConfigs []struct {
		SourceLabels []string `yaml:"source_labels"`
		Regex        string   `yaml:"regex"`
		Action       string   `yaml:"action"`
	} `yaml:"relabel_configs"`
}

// promConfig is what the tests read of a Prometheus config.
type promConfig struct {
	ScrapeConfigs []promScrapeConfig `yaml:"scrape_configs"`
}

// checkScrapeConfigsUseMTLS fails for a job that does not scrape over
// https with a CA, a client certificate and its key.
func checkScrapeConfigsUseMTLS(t testing.TB, doc *yaml.Node) {
	t.Helper()
	var c promConfig
	if err := doc.Decode(&c); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if len(c.ScrapeConfigs) == 0 {
		t.Fatal("no scrape_configs")
	}
	for _, sc := range c.ScrapeConfigs {
		tc := sc.TLSConfig
		if sc.Scheme != "https" || tc.CAFile == "" || tc.CertFile == "" || tc.KeyFile == "" {
			t.Errorf("job %q: want scheme https and tls_config with ca_file, cert_file "+
				"and key_file; got scheme %q, %+v", sc.JobName, sc.Scheme, tc)
		}
	}
}

// rewriteTLSFiles points every file-naming tls_config key in the YAML
// tree at a dev-certs file. An anchored tls_config is rewritten once, and
// its aliases follow.
func rewriteTLSFiles(n *yaml.Node, k pki) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if file, ok := tlsFileKeys[key.Value]; ok && val.Kind == yaml.ScalarNode {
				val.Value = file(k)
			}
		}
	}
	for _, c := range n.Content {
		rewriteTLSFiles(c, k)
	}
}
