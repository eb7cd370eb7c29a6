package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// Address is where the diag server listens.
type Address struct {
	// Network is "tcp" or "unix".
	Network string
	// Addr is host:port for TCP, the socket's path for unix.
	Addr string
	// Host is what the Host header of forwarded requests carries.
	Host string
}

// String returns the address in the form it was configured in.
func (a Address) String() string {
	if a.Network == "unix" {
		return (&url.URL{Scheme: "unix", Path: a.Addr}).String()
	}
	return "http://" + a.Addr
}

// IsLocal reports whether the address cannot leave the machine: a unix
// socket, a loopback IP, or the name localhost.
func (a Address) IsLocal() bool {
	if a.Network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseAddress parses an upstream URL: http://host[:port] (port 80 when
// left out) or unix:///absolute/path.sock. The URL names a server, not a
// path on it: any path other than "/", a query, a fragment or user
// information is an error, so that a typo cannot quietly change what is
// forwarded.
func ParseAddress(raw string) (Address, error) {
	if !strings.Contains(raw, "://") && !strings.HasPrefix(raw, "unix:") {
		return Address{}, fmt.Errorf("upstream URL %q: want http://host:port or "+
			"unix:///path/to.sock", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Address{}, fmt.Errorf("parsing upstream URL %q: %w", raw, errors.Unwrap(err))
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return Address{}, fmt.Errorf("upstream URL %q: user info, query and fragment "+
			"are not allowed", raw)
	}

	switch u.Scheme {
	case "unix":
		return parseUnix(raw, u)
	case "http":
		return parseHTTP(raw, u)
	case "https":
		return Address{}, fmt.Errorf("upstream URL %q: https upstreams are not supported; "+
			"the diag server is reached in clear text on loopback or a unix socket", raw)
	default:
		return Address{}, fmt.Errorf("upstream URL %q: scheme must be http or unix", raw)
	}
}

func parseUnix(raw string, u *url.URL) (Address, error) {
	if u.Host != "" || u.Opaque != "" {
		return Address{}, fmt.Errorf("upstream URL %q: a unix socket is written "+
			"unix:///absolute/path (three slashes)", raw)
	}
	if !filepath.IsAbs(u.Path) || filepath.Clean(u.Path) != u.Path {
		return Address{}, fmt.Errorf("upstream URL %q: socket path must be absolute and clean", raw)
	}
	return Address{Network: "unix", Addr: u.Path, Host: "localhost"}, nil
}

func parseHTTP(raw string, u *url.URL) (Address, error) {
	if u.Path != "" && u.Path != "/" {
		return Address{}, fmt.Errorf("upstream URL %q: must not carry a path; "+
			"set upstream.metrics_path instead", raw)
	}
	host := u.Hostname()
	if host == "" {
		return Address{}, fmt.Errorf("upstream URL %q: no host", raw)
	}
	if strings.ContainsAny(host, "[]") {
		return Address{}, fmt.Errorf("upstream URL %q: bad host %q", raw, host)
	}

	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return Address{}, fmt.Errorf("upstream URL %q: empty port", raw)
		}
		port = "80"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Address{}, fmt.Errorf("upstream URL %q: port must be 1 to 65535", raw)
	}
	addr := net.JoinHostPort(host, port)
	return Address{Network: "tcp", Addr: addr, Host: u.Host}, nil
}
