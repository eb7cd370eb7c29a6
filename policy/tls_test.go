package policy_test

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
)

func TestServerConfigRefusesMissingParts(t *testing.T) {
	ca := newCA(t, "CA-A")
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }

	tests := []struct {
		name string
		opts policy.ServerOptions
	}{
		{name: "no client CAs", opts: policy.ServerOptions{GetCertificate: getCert}},
		{name: "no certificate source", opts: policy.ServerOptions{ClientCAs: ca.Pool()}},
		{name: "nothing", opts: policy.ServerOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := policy.ServerConfig(tc.opts)
			if err == nil {
				t.Fatal("ServerConfig succeeded, want an error")
			}
			if cfg != nil {
				t.Errorf("ServerConfig returned a config with its error")
			}
		})
	}
}

func TestServerConfig(t *testing.T) {
	ca := newCA(t, "CA-A")
	pool := ca.Pool()
	called := false
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		called = true
		return nil, nil
	}

	cfg, err := policy.ServerConfig(policy.ServerOptions{ClientCAs: pool, GetCertificate: getCert})
	if err != nil {
		t.Fatal(err)
	}

	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v, want RequireAndVerifyClientCert", cfg.ClientAuth)
	}
	if cfg.ClientCAs != pool {
		t.Error("ClientCAs is not the pool passed in")
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		t.Errorf("MaxVersion = %#x shuts out TLS 1.3", cfg.MaxVersion)
	}
	if want := []string{"h2", "http/1.1"}; !slices.Equal(cfg.NextProtos, want) {
		t.Errorf("NextProtos = %q, want %q", cfg.NextProtos, want)
	}
	if cfg.InsecureSkipVerify {
		t.Error("InsecureSkipVerify is set")
	}
	if len(cfg.Certificates) != 0 {
		t.Error("static certificates set next to GetCertificate")
	}
	if _, _ = cfg.GetCertificate(nil); !called {
		t.Error("GetCertificate is not the function passed in")
	}
}
