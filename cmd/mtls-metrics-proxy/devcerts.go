package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// devFile is one file dev-certs writes.
type devFile struct {
	name    string
	data    []byte
	private bool
}

func devCertsCmd(args []string, stdout, stderr io.Writer) int {
	fset := newFlags("dev-certs",
		"dev-certs --out DIR [--hosts H,...] [--client NAME] [--force]", stderr)
	out := fset.String("out", "", "`directory` to write into (created if missing)")
	hosts := fset.String("hosts", "localhost,127.0.0.1,::1",
		"comma-separated DNS names and IPs for the server certificate")
	client := fset.String("client", "prometheus", "common `name` of the client certificate")
	force := fset.Bool("force", false, "overwrite files that already exist")
	if code, ok := parseFlags(fset, args, "out"); !ok {
		return code
	}

	files, err := devCerts(strings.Split(*hosts, ","), *client)
	if err != nil {
		fmt.Fprintln(stderr, "dev-certs:", err)
		return exitError
	}
	if err := writeDevFiles(*out, files, *force); err != nil {
		fmt.Fprintln(stderr, "dev-certs:", err)
		return exitError
	}

	fmt.Fprintf(stdout, "wrote a throwaway PKI to %s (for development only):\n", *out)
	for _, f := range files {
		fmt.Fprintf(stdout, "  %s\n", filepath.Join(*out, f.name))
	}
	return exitOK
}

// devCerts makes a CA, a server keypair for hosts and a client keypair.
// The CA's key is not written: nothing more can be signed with it, which is
// what a throwaway PKI should be.
func devCerts(hosts []string, client string) ([]devFile, error) {
	// Each run's CA gets a name of its own: Go clients choose their
	// certificate by the CA names a server asks for, and two dev PKIs
	// with one name would look alike to them.
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	ca, err := devpki.NewCA(fmt.Sprintf("mtls-metrics-proxy dev CA %x", suffix))
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(devpki.ServerTemplate(hosts...))
	if err != nil {
		return nil, err
	}
	cli, err := ca.Issue(devpki.ClientTemplate(client))
	if err != nil {
		return nil, err
	}
	return []devFile{
		{name: "ca.pem", data: ca.CertPEM()},
		{name: "server.pem", data: srv.CertPEM()},
		{name: "server-key.pem", data: srv.KeyPEM(), private: true},
		{name: "client.pem", data: cli.CertPEM()},
		{name: "client-key.pem", data: cli.KeyPEM(), private: true},
	}, nil
}

func writeDevFiles(dir string, files []devFile, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	if !force {
		for _, f := range files {
			p := filepath.Join(dir, f.name)
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s already exists; use --force to overwrite", p)
			}
		}
	}
	for _, f := range files {
		mode := os.FileMode(0o644)
		if f.private {
			mode = 0o600
		}
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, mode); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		// WriteFile keeps the mode of a file that already existed.
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", p, err)
		}
	}
	return nil
}
