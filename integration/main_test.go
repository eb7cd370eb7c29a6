package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// modulePath is the module the binaries under test come from.
const modulePath = "github.com/mtls-metrics-proxy/mtls-metrics-proxy"

// Paths of the binaries TestMain builds. They are never looked up in $PATH,
// so that the tests always run the code of this checkout.
var (
	proxyBin string
	diagdBin string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the binaries into a temporary folder, runs the tests,
// and removes the folder; it is TestMain's body, split out so that the
// deferred removal runs before os.Exit.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mtls-metrics-proxy-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: creating build folder:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	proxyBin = filepath.Join(dir, "mtls-metrics-proxy")
	diagdBin = filepath.Join(dir, "diagd")
	return m.Run()
}

// buildBinaries runs go build for the proxy and the example daemon.
func buildBinaries(dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
		modulePath+"/cmd/mtls-metrics-proxy", modulePath+"/examples/diagd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building the binaries: %w\n%s", err, out)
	}
	return nil
}

// requireProgram returns the path of an installed program the tests put
// next to the proxy. When it is missing, the test skips, or fails when the
// environment says it runs in CI: there the tests must run, not skip.
func requireProgram(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// A minimal $PATH (sudo, some CI runners) may leave out /usr/bin.
	if p := filepath.Join("/usr/bin", name); isExecutable(p) {
		return p
	}

	const install = "apt-get install prometheus prometheus-node-exporter"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI=true requires these tests to run; "+
			"install it with: %s", name, install)
	}
	t.Skipf("%s is not installed; install it with: %s (with CI=true this is a failure)",
		name, install)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
