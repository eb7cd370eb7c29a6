package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestC23UpstreamNotListening starts the proxy before its daemon. The
// proxy must start anyway and warn, naming the upstream; a scrape gets 502
// "upstream unavailable"; once the daemon is up, the very next scrape
// succeeds, with the same proxy process.
func TestC23UpstreamNotListening(t *testing.T) {
	for _, tc := range []struct {
		name string
		// addrs returns the upstream URL for the proxy and the --listen
		// address for diagd, both naming a place where nothing listens.
		addrs func(t *testing.T) (url, listen string)
		// dialErr is part of the dial error the warning must carry.
		dialErr string
	}{
		{
			name: "tcp port closed",
			addrs: func(t *testing.T) (string, string) {
				addr := reservePort(t)
				return "http://" + addr, addr
			},
			dialErr: "connection refused",
		},
		{
			name: "unix socket missing",
			addrs: func(t *testing.T) (string, string) {
				sock := filepath.Join(shortTempDir(t), "diag.sock")
				return "unix://" + sock, "unix://" + sock
			},
			dialErr: "no such file or directory",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, listen := tc.addrs(t)
			k := newPKI(t)
			px := startProxy(t, k, proxyOptions{upstream: url})
			client := mtlsClient(t, k)

			w := px.waitLog(t, "a warning about the upstream", func(e logEntry) bool {
				return e.str("@level") == "warn" && e.str("upstream") == url
			})
			if !strings.Contains(w.str("err"), tc.dialErr) {
				t.Errorf("warning %q has err %q, want it to contain %q",
					w.str("@message"), w.str("err"), tc.dialErr)
			}

			res := mustScrape(t, client, px.metricsURL())
			if res.status != http.StatusBadGateway ||
				strings.TrimSpace(res.body) != "upstream unavailable" {
				t.Errorf("scrape with the upstream down: %d %q, want 502 %q",
					res.status, res.body, "upstream unavailable")
			}
			px.waitLog(t, "the failed scrape", func(e logEntry) bool {
				return e.str("@message") == "scrape failed" && e.str("failure") == "dial"
			})

			startDiagd(t, listen)
			res = mustScrape(t, client, px.metricsURL())
			if res.status != http.StatusOK || !strings.Contains(res.body, "\ndiagd_up 1\n") {
				t.Errorf("first scrape after diagd started: %d, want 200 with diagd_up 1\n%s",
					res.status, res.body)
			}
			if px.exited() {
				t.Errorf("proxy exited; it should have kept running")
			}
		})
	}
}

// shortTempDir returns a temporary folder with a short path: a unix
// socket's path must fit in 108 bytes, and t.TempDir's paths grow with the
// test's name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mmp")
	if err != nil {
		t.Fatalf("creating temporary folder: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
