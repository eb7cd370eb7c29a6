package bench

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestFindFrontsSkipsMissing checks that a front that is not installed is
// skipped with the command that installs it, and that the run goes on.
func TestFindFrontsSkipsMissing(t *testing.T) {
	ghost := &frontKind{Name: "ghost", program: "scrapebench-no-such-program",
		install: "apt-get install -y ghost", tls: true, forwards: true, workers: goWorkers}
	var stderr bytes.Buffer
	r := &runner{
		cfg:    Config{Self: "/bin/true", Stderr: &stderr},
		plan:   &plan{fronts: []*frontKind{frontByName("none"), ghost}},
		bins:   map[string]string{},
		report: &Report{},
	}
	if err := r.findFronts(); err != nil {
		t.Fatalf("findFronts: %v", err)
	}
	if got := r.running(); len(got) != 1 || got[0].Name != "none" {
		t.Fatalf("running %v, want only none", got)
	}
	if len(r.report.Fronts) != 2 {
		t.Fatalf("%d fronts reported, want 2", len(r.report.Fronts))
	}
	skipped := r.report.Fronts[1]
	if !strings.Contains(skipped.Skipped, ghost.install) {
		t.Errorf("skipped %q: want the install command", skipped.Skipped)
	}
	if !strings.Contains(stderr.String(), "skipping ghost") {
		t.Errorf("stderr %q: want a skip notice", stderr.String())
	}
}

func TestFindFrontsNeedsTheProxy(t *testing.T) {
	r := &runner{
		cfg:    Config{ProxyBin: "/nonexistent/mtls-metrics-proxy"},
		plan:   &plan{fronts: []*frontKind{frontByName("proxy")}},
		bins:   map[string]string{},
		report: &Report{},
	}
	if err := r.findFronts(); !errors.Is(err, ErrConfig) {
		t.Fatalf("findFronts error = %v, want ErrConfig", err)
	}
}

func TestLookProgram(t *testing.T) {
	if _, err := lookProgram("scrapebench-no-such-program"); !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("error = %v, want exec.ErrNotFound", err)
	}
	if _, err := lookProgram("sh"); err != nil {
		t.Fatalf("sh: %v", err)
	}
}

func TestFrontKinds(t *testing.T) {
	for _, k := range frontKinds {
		t.Run(k.Name, func(t *testing.T) {
			if frontByName(k.Name) != k {
				t.Fatal("frontByName does not find it")
			}
			if k.program != "" && k.install == "" {
				t.Error("third-party front without an install hint")
			}
			if k.forwards && (k.template == "" || k.argv == nil) {
				t.Error("forwarding front without a configuration or command")
			}
			if k.workers(2) == "" || k.pool == "" {
				t.Error("no workers or pool description")
			}
		})
	}
	if frontByName("envoy") != nil {
		t.Error("frontByName found an unknown front")
	}
}
