package serve

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"", false},
		{"identity", false},
		{"gzip", true},
		{"GZIP", true},
		{"deflate, gzip;q=0.5", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0", false},
		{"*", true},
		{"br, *;q=0.1", true},
		{"gzipx", false},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			if got := AcceptsGzip(tc.header); got != tc.want {
				t.Fatalf("AcceptsGzip(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	c, err := NewContent(100<<10, true)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(c))
	t.Cleanup(srv.Close)

	tests := []struct {
		name           string
		method, path   string
		acceptEncoding string
		status         int
		encoding       string
		body           []byte
	}{
		{"identity", "GET", "/metrics", "identity", 200, "", c.Identity},
		{"gzip", "GET", "/metrics", "gzip", 200, "gzip", c.Gzip},
		{"head", "HEAD", "/metrics", "identity", 200, "", nil},
		{"other path", "GET", "/metrics/", "", 404, "", nil},
		{"other method", "POST", "/metrics", "", 405, "", nil},
	}
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept-Encoding", tc.acceptEncoding)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if e := resp.Header.Get("Content-Encoding"); e != tc.encoding {
				t.Fatalf("Content-Encoding %q, want %q", e, tc.encoding)
			}
			// Like promhttp: streamed, so no length is announced.
			if resp.ContentLength != -1 && tc.method == "GET" {
				t.Fatalf("ContentLength = %d, want chunked", resp.ContentLength)
			}
			if !bytes.Equal(got, tc.body) {
				t.Fatalf("body: %d bytes, want %d", len(got), len(tc.body))
			}
		})
	}
}

func TestNewContentGzipDecodes(t *testing.T) {
	c, err := NewContent(4096, true)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(c.Gzip))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(back, c.Identity) {
		t.Fatalf("gzip body does not decode to the identity body: %v", err)
	}
	plain, err := NewContent(4096, false)
	if err != nil || plain.Gzip != nil {
		t.Fatalf("NewContent without gzip: Gzip = %d bytes, err %v", len(plain.Gzip), err)
	}
}

// TestServeUnixToo serves one body on loopback TCP and on a unix socket
// and scrapes both, as the bench's proxy and proxy-unix fronts do.
func TestServeUnixToo(t *testing.T) {
	c, err := NewContent(10<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "upstream.sock")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		err := Serve(ctx, Options{Listen: "127.0.0.1:0", Unix: sock, Content: c, Stdout: pw})
		pw.CloseWithError(err) // a Serve that failed early ends the read below
		errc <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	var ready Ready
	if err := json.NewDecoder(pr).Decode(&ready); err != nil {
		t.Fatalf("reading the ready line: %v", err)
	}
	if ready.Unix != sock {
		t.Fatalf("ready line names socket %q, want %q", ready.Unix, sock)
	}

	viaUnix := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn,
		error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(viaUnix.CloseIdleConnections)
	for name, client := range map[string]*http.Client{
		"tcp": http.DefaultClient, "unix": {Transport: viaUnix},
	} {
		resp, err := client.Get("http://" + ready.Addr + MetricsPath)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, c.Identity) {
			t.Fatalf("%s: status %d, %d bytes (err %v), want 200 and the body", name,
				resp.StatusCode, len(b), err)
		}
	}
}
