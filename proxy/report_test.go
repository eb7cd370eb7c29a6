package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// checkNow is the fixed "now" of the golden reports.
var checkNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// goldenPKI writes certificates whose every printed field is fixed, so that
// reports compare byte for byte.
func goldenPKI(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := devpki.NewCAFrom(devpki.Template{CommonName: "golden CA",
		NotBefore: checkNow.Add(-time.Hour), NotAfter: checkNow.Add(365 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(tmpl devpki.Template, notAfter time.Time) *devpki.Leaf {
		tmpl.NotBefore = checkNow.Add(-24 * time.Hour)
		tmpl.NotAfter = notAfter
		return mustIssue(t, ca, tmpl)
	}
	long := checkNow.Add(90 * 24 * time.Hour)
	withIP := issue(devpki.ServerTemplate("metrics.example", "10.0.0.5"), long)
	noIP := issue(devpki.ServerTemplate("metrics.example"), checkNow.Add(5*24*time.Hour))

	writeFile(t, dir, "ca.pem", ca.CertPEM(), 0o644)
	writeFile(t, dir, "ip.pem", withIP.CertPEM(), 0o644)
	writeFile(t, dir, "ip-key.pem", withIP.KeyPEM(), 0o600)
	writeFile(t, dir, "noip.pem", noIP.CertPEM(), 0o644)
	writeFile(t, dir, "noip-key.pem", noIP.KeyPEM(), 0o600)

	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(7), ThisUpdate: checkNow.Add(-time.Hour),
		NextUpdate: checkNow.Add(7 * 24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(42), RevocationTime: checkNow},
		},
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "crl.der", der, 0o644)
	return dir
}

// TestCheckReports compares what check prints with golden files.
func TestCheckReports(t *testing.T) {
	tests := []struct {
		name   string
		config string
	}{
		{"full", `
[metrics_service]
listen_addr = "10.0.0.5:3081"
ca_certs = ["ca.pem"]
crl_files = ["crl.der"]
client_allowed_sans = ["spiffe://cluster.local/ns/monitoring/sa/prometheus"]
client_allowed_common_names = ["prometheus"]
min_version = "TLS13"
curve_preferences = ["X25519", "CurveP256"]
[[metrics_service.keypairs]]
cert_file = "ip.pem"
key_file = "ip-key.pem"
[upstream]
url = "unix:///run/daemon/diag.sock"
[diag]
listen_addr = "0.0.0.0:3000"
[health]
listen_addr = "127.0.0.1:3082"
`},
		{"expiring-no-ip-san", `
[metrics_service]
ca_certs = ["ca.pem"]
expiry_warning = "168h"
[[metrics_service.keypairs]]
cert_file = "noip.pem"
key_file = "noip-key.pem"
[upstream]
url = "http://127.0.0.1:6060"
`},
		{"mtls-off", `
[metrics_service]
mtls = false
[upstream]
url = "http://127.0.0.1:6060"
`},
		{"migration", `
[metrics_service]
ca_certs = ["ca.pem"]
[[metrics_service.keypairs]]
cert_file = "ip.pem"
key_file = "ip-key.pem"
[upstream]
url = "http://127.0.0.1:6060"
[diag]
listen_addr = ":3000"
keep_metrics = true
`},
		{"bad", `
[metrics_service]
ca_cert = ["ca.pem"]
[[metrics_service.keypairs]]
cert_file = "missing.pem"
key_file = "ip-key.pem"
[upstream]
url = "http://198.51.100.7:6060"
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := goldenPKI(t)
			path := writeFile(t, dir, "proxy.toml", []byte(tc.config), 0o644)
			got := renderCheck(t, path)
			got = strings.ReplaceAll(got, dir, "$DIR")
			compareGolden(t, filepath.Join("testdata", "check", tc.name+".golden"), got)
		})
	}
}

// renderCheck runs what check runs and returns its text, or its problems.
func renderCheck(t testing.TB, path string) string {
	t.Helper()
	cfg, err := Load(path)
	if err != nil {
		return err.Error() + "\n"
	}
	p, err := New(cfg, hclog.NewNullLogger())
	if err != nil {
		return err.Error() + "\n"
	}
	var b bytes.Buffer
	if err := p.Report(checkNow).WriteText(&b); err != nil {
		t.Fatal(err)
	}

	// The JSON form carries the same facts.
	js, err := json.Marshal(p.Report(checkNow))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || back.Config != path || !back.OK {
		t.Errorf("JSON report does not round-trip: %v", err)
	}
	return b.String()
}

func compareGolden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./proxy -run TestCheckReports -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update if intended):\n--- got\n%s\n--- want\n%s",
			path, got, want)
	}
}
