package integration

import (
	"regexp"
	"strings"
	"testing"
)

// startDiagd runs the example daemon on listen (host:port, or unix:// and
// a socket path) and returns the address it reports.
func startDiagd(t testing.TB, listen string) (*proc, string) {
	t.Helper()
	p := startProc(t, "diagd", diagdBin, "--listen", listen)
	const prefix = "diagd listening on "
	line := p.waitLine(t, p.stdout, "its address", func(l string) bool {
		return strings.HasPrefix(l, prefix)
	})
	return p, strings.TrimPrefix(line, prefix)
}

// listeningOn matches the line in which programs built on Prometheus's
// exporter-toolkit (Prometheus itself, node_exporter) log the address they
// bound, in both the go-kit logfmt of 2.x and the slog format of later
// releases.
var listeningOn = regexp.MustCompile(`msg="Listening on".*\baddress=([^\s"]+)`)

// startExporterToolkitProgram runs a program that takes
// --web.listen-address, binds it to a port of the kernel's choosing on
// 127.0.0.1, and returns the address it logged. Port 0 rather than a port
// picked in advance leaves no window in which another process could take
// the port.
func startExporterToolkitProgram(t testing.TB, name, bin string, args ...string) (*proc, string) {
	t.Helper()
	args = append(args, "--web.listen-address=127.0.0.1:0")
	p := startProc(t, name, bin, args...)
	line := p.waitLine(t, p.stderr, `"Listening on" with its address`, listeningOn.MatchString)
	return p, listeningOn.FindStringSubmatch(line)[1]
}

// nodeExporterCollectors are the node_exporter collectors the tests turn
// on: ones that read only /proc and /sys, work in containers, and always
// yield the same metric families, so that two scrapes can be compared.
var nodeExporterCollectors = []string{"cpu", "loadavg", "meminfo", "stat", "time", "uname"}

// startNodeExporter runs Debian's prometheus-node-exporter on 127.0.0.1 and
// returns its address.
func startNodeExporter(t testing.TB) (*proc, string) {
	t.Helper()
	bin := requireProgram(t, "prometheus-node-exporter")
	args := []string{"--collector.disable-defaults"}
	for _, c := range nodeExporterCollectors {
		args = append(args, "--collector."+c)
	}
	return startExporterToolkitProgram(t, "prometheus-node-exporter", bin, args...)
}
