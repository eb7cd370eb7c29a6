package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// pkiFiles are the PEM files every front and the scraper use: one CA that
// signed both the server's and the client's keypairs, as dev-certs makes.
type pkiFiles struct {
	CA         string
	Cert, Key  string
	CertAndKey string // the server's certificate and key in one file, for HAProxy
	ClientCert string
	ClientKey  string
}

// writePKI makes a throwaway PKI in dir: ECDSA P-256 keys, a server
// certificate for localhost, 127.0.0.1 and ::1, and a client certificate
// like the one Prometheus would present.
func writePKI(dir string) (pkiFiles, error) {
	ca, err := devpki.NewCA("scrapebench CA")
	if err != nil {
		return pkiFiles{}, fmt.Errorf("making the bench CA: %w", err)
	}
	srv, err := ca.Issue(devpki.ServerTemplate("localhost", "127.0.0.1", "::1"))
	if err != nil {
		return pkiFiles{}, fmt.Errorf("issuing the server certificate: %w", err)
	}
	cli, err := ca.Issue(devpki.ClientTemplate("prometheus"))
	if err != nil {
		return pkiFiles{}, fmt.Errorf("issuing the client certificate: %w", err)
	}

	f := pkiFiles{
		CA:         filepath.Join(dir, "ca.pem"),
		Cert:       filepath.Join(dir, "server.pem"),
		Key:        filepath.Join(dir, "server-key.pem"),
		CertAndKey: filepath.Join(dir, "server-combined.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	files := []struct {
		path string
		data []byte
	}{
		{f.CA, ca.CertPEM()},
		{f.Cert, srv.CertPEM()},
		{f.Key, srv.KeyPEM()},
		{f.CertAndKey, append(srv.CertPEM(), srv.KeyPEM()...)},
		{f.ClientCert, cli.CertPEM()},
		{f.ClientKey, cli.KeyPEM()},
	}
	for _, file := range files {
		// Private keys and all: the proxy refuses keys others may write and
		// warns about keys others may read.
		if err := os.WriteFile(file.path, file.data, 0o600); err != nil {
			return pkiFiles{}, fmt.Errorf("writing %s: %w", file.path, err)
		}
	}
	return f, nil
}
