package upstream_test

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/upstream"
)

// tcp returns a TCP address dialing addr with Host header host.
func tcp(addr, host string) upstream.Address {
	return upstream.Address{Network: "tcp", Addr: addr, Host: host}
}

var parseAddressCases = []struct {
	name      string
	raw       string
	want      upstream.Address
	wantLocal bool
	wantErr   bool
}{
	{name: "loopback with port", raw: "http://127.0.0.1:6060",
		want: tcp("127.0.0.1:6060", "127.0.0.1:6060"), wantLocal: true},
	{name: "default port 80", raw: "http://127.0.0.1",
		want: tcp("127.0.0.1:80", "127.0.0.1"), wantLocal: true},
	{name: "root path allowed", raw: "http://127.0.0.1:6060/",
		want: tcp("127.0.0.1:6060", "127.0.0.1:6060"), wantLocal: true},
	{name: "other loopback address", raw: "http://127.0.0.2:1",
		want: tcp("127.0.0.2:1", "127.0.0.2:1"), wantLocal: true},
	{name: "localhost", raw: "http://localhost:6060",
		want: tcp("localhost:6060", "localhost:6060"), wantLocal: true},
	{name: "localhost upper case", raw: "http://LOCALHOST:6060",
		want: tcp("LOCALHOST:6060", "LOCALHOST:6060"), wantLocal: true},
	{name: "upper-case scheme", raw: "HTTP://127.0.0.1:1",
		want: tcp("127.0.0.1:1", "127.0.0.1:1"), wantLocal: true},
	{name: "IPv6 loopback", raw: "http://[::1]:6060",
		want: tcp("[::1]:6060", "[::1]:6060"), wantLocal: true},
	{name: "IPv6 loopback default port", raw: "http://[::1]",
		want: tcp("[::1]:80", "[::1]"), wantLocal: true},
	{name: "highest port", raw: "http://127.0.0.1:65535",
		want: tcp("127.0.0.1:65535", "127.0.0.1:65535"), wantLocal: true},
	{name: "remote IP", raw: "http://10.0.0.1:6060",
		want: tcp("10.0.0.1:6060", "10.0.0.1:6060")},
	{name: "remote name", raw: "http://daemon.example:6060",
		want: tcp("daemon.example:6060", "daemon.example:6060")},
	{name: "name that starts like localhost", raw: "http://localhost.example:1",
		want: tcp("localhost.example:1", "localhost.example:1")},
	{name: "unspecified address is not loopback", raw: "http://0.0.0.0:6060",
		want: tcp("0.0.0.0:6060", "0.0.0.0:6060")},
	{name: "unix socket", raw: "unix:///run/daemon/diag.sock",
		want: upstream.Address{Network: "unix", Addr: "/run/daemon/diag.sock",
			Host: "localhost"},
		wantLocal: true},

	{name: "empty", raw: "", wantErr: true},
	{name: "no scheme", raw: "127.0.0.1:6060", wantErr: true},
	{name: "host:port read as scheme", raw: "localhost:6060", wantErr: true},
	{name: "https", raw: "https://127.0.0.1:6060", wantErr: true},
	{name: "other scheme", raw: "ftp://127.0.0.1", wantErr: true},
	{name: "path", raw: "http://127.0.0.1:6060/metrics", wantErr: true},
	{name: "dot path", raw: "http://127.0.0.1:6060/.", wantErr: true},
	{name: "user info", raw: "http://u:p@127.0.0.1:6060", wantErr: true},
	{name: "query", raw: "http://127.0.0.1:6060?a=b", wantErr: true},
	{name: "empty query", raw: "http://127.0.0.1:6060?", wantErr: true},
	{name: "fragment", raw: "http://127.0.0.1:6060#f", wantErr: true},
	{name: "no host", raw: "http://", wantErr: true},
	{name: "port without host", raw: "http://:6060", wantErr: true},
	{name: "empty port", raw: "http://127.0.0.1:", wantErr: true},
	{name: "port zero", raw: "http://127.0.0.1:0", wantErr: true},
	{name: "port too high", raw: "http://127.0.0.1:65536", wantErr: true},
	{name: "huge port", raw: "http://127.0.0.1:99999999999999999999", wantErr: true},
	{name: "named port", raw: "http://127.0.0.1:http", wantErr: true},
	{name: "opaque http", raw: "http:127.0.0.1", wantErr: true},
	{name: "unix with host", raw: "unix://run/diag.sock", wantErr: true},
	{name: "unix opaque", raw: "unix:diag.sock", wantErr: true},
	{name: "unix empty", raw: "unix://", wantErr: true},
	{name: "unix not clean", raw: "unix:///run/../diag.sock", wantErr: true},
	{name: "unix trailing slash", raw: "unix:///run/diag.sock/", wantErr: true},
	{name: "unix double slash", raw: "unix:///run//diag.sock", wantErr: true},
	{name: "unix query", raw: "unix:///run/diag.sock?x", wantErr: true},
	{name: "control character", raw: "http://127.0.0.1\n:1", wantErr: true},
}

func TestParseAddress(t *testing.T) {
	for _, tc := range parseAddressCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := upstream.ParseAddress(tc.raw)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseAddress(%q) = %#v, want an error", tc.raw, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tc.raw, err)
			}
			if got != tc.want {
				t.Errorf("ParseAddress(%q) = %#v, want %#v", tc.raw, got, tc.want)
			}
			if local := got.IsLocal(); local != tc.wantLocal {
				t.Errorf("IsLocal() = %v, want %v", local, tc.wantLocal)
			}
		})
	}
}

func TestAddressIsLocal(t *testing.T) {
	tests := []struct {
		addr upstream.Address
		want bool
	}{
		{upstream.Address{Network: "unix", Addr: "/run/x.sock"}, true},
		{upstream.Address{Network: "unix", Addr: "relative.sock"}, true},
		{upstream.Address{Network: "tcp", Addr: "127.0.0.1:1"}, true},
		{upstream.Address{Network: "tcp", Addr: "127.255.255.254:1"}, true},
		{upstream.Address{Network: "tcp", Addr: "[::1]:1"}, true},
		{upstream.Address{Network: "tcp", Addr: "[::ffff:127.0.0.1]:1"}, true},
		{upstream.Address{Network: "tcp", Addr: "localhost:1"}, true},
		{upstream.Address{Network: "tcp", Addr: "Localhost:1"}, true},
		{upstream.Address{Network: "tcp", Addr: "localhost.:1"}, false},
		{upstream.Address{Network: "tcp", Addr: "127.0.0.1"}, false},
		{upstream.Address{Network: "tcp", Addr: "0.0.0.0:1"}, false},
		{upstream.Address{Network: "tcp", Addr: "[::]:1"}, false},
		{upstream.Address{Network: "tcp", Addr: "10.0.0.1:1"}, false},
		{upstream.Address{Network: "tcp", Addr: "127.0.0.1.nip.io:1"}, false},
		{upstream.Address{Network: "tcp", Addr: "[fe80::1%lo]:1"}, false},
		{upstream.Address{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.addr.Network+" "+tc.addr.Addr, func(t *testing.T) {
			if got := tc.addr.IsLocal(); got != tc.want {
				t.Errorf("%#v.IsLocal() = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestAddressString(t *testing.T) {
	tests := []struct {
		raw  string
		want string
	}{
		{raw: "http://127.0.0.1:6060", want: "http://127.0.0.1:6060"},
		{raw: "http://127.0.0.1", want: "http://127.0.0.1:80"},
		{raw: "http://[::1]", want: "http://[::1]:80"},
		{raw: "unix:///run/daemon/diag.sock", want: "unix:///run/daemon/diag.sock"},
		{raw: "unix:///run/a%20b.sock", want: "unix:///run/a%20b.sock"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			a, err := upstream.ParseAddress(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAddressStringRoundTripsEscapedSocketPath checks that String escapes a
// socket path holding '%', '?' or '#' (configured as %25, %3F, %23), so that
// what it prints parses back to the same address. (It once printed them raw.)
func TestAddressStringRoundTripsEscapedSocketPath(t *testing.T) {
	for _, raw := range []string{
		"unix:///run/a%25b.sock",
		"unix:///run/a%3Fb.sock",
		"unix:///run/a%23b.sock",
	} {
		t.Run(raw, func(t *testing.T) {
			a, err := upstream.ParseAddress(raw)
			if err != nil {
				t.Fatal(err)
			}
			back, err := upstream.ParseAddress(a.String())
			if err != nil || back != a {
				t.Errorf("ParseAddress(%q) = %#v, %v; want %#v", a.String(), back, err, a)
			}
		})
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, tc := range parseAddressCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := upstream.ParseAddress(raw)
		if err != nil {
			if a != (upstream.Address{}) {
				t.Fatalf("ParseAddress(%q) = %#v with error %v", raw, a, err)
			}
			return
		}

		switch a.Network {
		case "unix":
			if !a.IsLocal() {
				t.Fatalf("ParseAddress(%q) = %#v: unix socket not local", raw, a)
			}
			if !filepath.IsAbs(a.Addr) || filepath.Clean(a.Addr) != a.Addr {
				t.Fatalf("ParseAddress(%q) = %#v: socket path not absolute and clean", raw, a)
			}
		case "tcp":
			checkTCPAddress(t, raw, a)
		default:
			t.Fatalf("ParseAddress(%q) = %#v: network %q", raw, a, a.Network)
		}
		if strings.ContainsAny(a.Host, "/?#@ \r\n") || a.Host == "" {
			t.Fatalf("ParseAddress(%q) = %#v: Host header %q", raw, a, a.Host)
		}
	})
}

func checkTCPAddress(t *testing.T, raw string, a upstream.Address) {
	t.Helper()
	host, port, err := net.SplitHostPort(a.Addr)
	if err != nil || host == "" {
		t.Fatalf("ParseAddress(%q) = %#v: Addr is not host:port: %v", raw, a, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		t.Fatalf("ParseAddress(%q) = %#v: port %q", raw, a, port)
	}
	// Local means the connection cannot leave the machine.
	ip := net.ParseIP(host)
	loopback := strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback())
	if a.IsLocal() != loopback {
		t.Fatalf("ParseAddress(%q) = %#v: IsLocal %v for host %q", raw, a, a.IsLocal(), host)
	}
}

// TestParseAddressRejectsBracketInHost checks hosts that url.Parse lets
// through but that are no host at all: a stray ']' outside an IPv6 literal.
// ParseAddress once accepted them with an Addr that every dial refuses, so
// the mistake surfaced as 502s at scrape time instead of a start-up error.
func TestParseAddressRejectsBracketInHost(t *testing.T) {
	for _, raw := range []string{"http://]", "http://a]b:6060", "http://]:6060"} {
		t.Run(raw, func(t *testing.T) {
			a, err := upstream.ParseAddress(raw)
			if err == nil {
				_, _, serr := net.SplitHostPort(a.Addr)
				t.Errorf("ParseAddress(%q) = %#v, no error; its Addr does not split: %v",
					raw, a, serr)
			}
		})
	}
}
