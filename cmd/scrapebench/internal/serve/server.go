package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Ready is the line a server prints on stdout once it listens, so that the
// process that started it learns the port it was given and the exact body
// sizes to check scrapes against.
type Ready struct {
	// Addr is the address the server listens on.
	Addr string `json:"addr"`
	// IdentityBytes is the length of the body without compression.
	IdentityBytes int `json:"identity_bytes"`
	// GzipBytes is the length of the gzip body, 0 when gzip is not offered.
	GzipBytes int `json:"gzip_bytes"`
	// Unix is the unix socket the server also listens on, if any.
	Unix string `json:"unix,omitempty"`
}

// Options configures [Serve].
type Options struct {
	// Listen is the address to bind, such as 127.0.0.1:0.
	Listen string
	// Unix, when set, is a unix socket path to serve on as well, for a
	// front that reaches the daemon that way.
	Unix string
	// Content is the body to serve.
	Content *Content
	// TLS, when set, makes the server require and verify client
	// certificates; nil serves clear text.
	TLS *TLSFiles
	// Stdout receives the [Ready] line.
	Stdout io.Writer
}

// TLSFiles names the PEM files of the direct server.
type TLSFiles struct {
	// CA holds the certificates client certificates must chain to.
	CA string
	// Cert and Key are the server's keypair.
	Cert, Key string
}

// Serve listens, prints the [Ready] line and serves until ctx is done,
// then shuts down, giving scrapes in flight a few seconds.
func Serve(ctx context.Context, o Options) error {
	srv := &http.Server{Handler: Handler(o.Content)}
	if o.TLS != nil {
		cfg, err := o.TLS.config()
		if err != nil {
			return err
		}
		srv.TLSConfig = cfg
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.Listen, err)
	}
	ready := Ready{Addr: ln.Addr().String(), IdentityBytes: len(o.Content.Identity),
		GzipBytes: len(o.Content.Gzip), Unix: o.Unix}
	var uln net.Listener
	if o.Unix != "" {
		if uln, err = net.Listen("unix", o.Unix); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listening on %s: %w", o.Unix, err)
		}
	}
	if err := json.NewEncoder(o.Stdout).Encode(ready); err != nil {
		_ = ln.Close()
		if uln != nil {
			_ = uln.Close()
		}
		return fmt.Errorf("announcing the address: %w", err)
	}

	errc := make(chan error, 2)
	if uln != nil {
		go func() { errc <- srv.Serve(uln) }()
	}
	go func() {
		if o.TLS != nil {
			// ServeTLS adds h2 and http/1.1 to the ALPN list, as a daemon
			// serving its own TLS with net/http would.
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ready.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down %s: %w", ready.Addr, err)
	}
	return nil
}

// config is Go's default server TLS configuration with client certificates
// required and verified and TLS 1.2 at least; nothing is tuned, since the
// direct server stands for a daemon that turns on TLS the plain way.
func (f *TLSFiles) config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("loading keypair %s: %w", f.Cert, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("reading client CA %s: %w", f.CA, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("loading client CA %s: no certificate in the file", f.CA)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
