package policy_test

import (
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

func TestParseTLSVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{in: "TLS12", want: tls.VersionTLS12},
		{in: "TLS13", want: tls.VersionTLS13},
		{in: "TLS10", wantErr: true},
		{in: "TLS11", wantErr: true},
		{in: "SSL30", wantErr: true},
		{in: "TLS14", wantErr: true},
		{in: "tls12", wantErr: true},
		{in: "1.2", wantErr: true},
		{in: "TLS1.2", wantErr: true},
		{in: " TLS12", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := policy.ParseTLSVersion(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseTLSVersion(%q) = %#x, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTLSVersion(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseTLSVersion(%q) = %#x, want %#x", tc.in, got, tc.want)
			}
		})
	}
}

// tls12Suites returns every suite Go considers secure that TLS 1.2 can use.
func tls12Suites() []*tls.CipherSuite {
	var out []*tls.CipherSuite
	for _, s := range tls.CipherSuites() {
		if slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			out = append(out, s)
		}
	}
	return out
}

func TestParseCipherSuitesAcceptsEverySecureTLS12Suite(t *testing.T) {
	suites := tls12Suites()
	if len(suites) == 0 {
		t.Fatal("crypto/tls lists no secure TLS 1.2 suite")
	}
	for _, s := range suites {
		t.Run(s.Name, func(t *testing.T) {
			got, err := policy.ParseCipherSuites([]string{s.Name})
			if err != nil {
				t.Fatalf("ParseCipherSuites(%q): %v", s.Name, err)
			}
			if !slices.Equal(got, []uint16{s.ID}) {
				t.Errorf("ParseCipherSuites(%q) = %#x, want [%#x]", s.Name, got, s.ID)
			}
		})
	}
}

func TestParseCipherSuites(t *testing.T) {
	const (
		aes128 = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
		chacha = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
	)
	tests := []struct {
		name  string
		names []string
		want  []uint16
	}{
		{name: "nil", names: nil, want: nil},
		{name: "empty", names: []string{}, want: nil},
		{name: "order kept", names: []string{chacha, aes128},
			want: []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseCipherSuites(tc.names)
			if err != nil {
				t.Fatalf("ParseCipherSuites(%q): %v", tc.names, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ParseCipherSuites(%q) = %#x, want %#x", tc.names, got, tc.want)
			}
		})
	}
}

func TestParseCipherSuitesRefuses(t *testing.T) {
	const good = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
	var refused []string
	for _, s := range tls.CipherSuites() {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			refused = append(refused, s.Name) // TLS 1.3 only
		}
	}
	for _, s := range tls.InsecureCipherSuites() {
		refused = append(refused, s.Name)
	}
	if !slices.Contains(refused, "TLS_AES_128_GCM_SHA256") ||
		!slices.Contains(refused, "TLS_RSA_WITH_RC4_128_SHA") {
		t.Fatalf("crypto/tls no longer lists the expected suites: %q", refused)
	}
	refused = append(refused,
		"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", // a Go constant alias, not a suite name
		"tls_ecdhe_ecdsa_with_aes_128_gcm_sha256",
		"ECDHE-ECDSA-AES128-GCM-SHA256", // OpenSSL's spelling
		"0xc02b",
		"",
		" "+good,
	)

	for _, name := range refused {
		t.Run(name, func(t *testing.T) {
			got, err := policy.ParseCipherSuites([]string{good, name})
			if err == nil {
				t.Fatalf("ParseCipherSuites(%q) = %#x, want an error", name, got)
			}
			if got != nil {
				t.Errorf("ParseCipherSuites returned %#x with its error", got)
			}
			// The text is what an operator sees at load; it must say which
			// name is wrong. Refusing TLS 1.3 and insecure suites by name
			// already explains itself.
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %q", err, name)
			}
		})
	}
}

// TestParseCipherSuitesUnknownListsAccepted checks that an unknown name's
// error lists every name that would have been accepted, and none that would
// not.
func TestParseCipherSuitesUnknownListsAccepted(t *testing.T) {
	_, err := policy.ParseCipherSuites([]string{"TLS_NO_SUCH_SUITE"})
	if err == nil {
		t.Fatal("ParseCipherSuites accepted an unknown suite")
	}
	words := strings.FieldsFunc(err.Error(), func(r rune) bool {
		return !('A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_')
	})
	for _, s := range tls12Suites() {
		if !slices.Contains(words, s.Name) {
			t.Errorf("error %q does not list accepted suite %s", err, s.Name)
		}
	}
	for _, s := range tls.InsecureCipherSuites() {
		if slices.Contains(words, s.Name) {
			t.Errorf("error %q lists insecure suite %s as accepted", err, s.Name)
		}
	}
	for _, s := range tls.CipherSuites() {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) &&
			slices.Contains(words, s.Name) {
			t.Errorf("error %q lists TLS 1.3 suite %s as accepted", err, s.Name)
		}
	}
}

func TestParseCurves(t *testing.T) {
	tests := []struct {
		name    string
		names   []string
		want    []tls.CurveID
		wantErr bool
	}{
		{name: "nil", names: nil, want: nil},
		{name: "X25519MLKEM768", names: []string{"X25519MLKEM768"},
			want: []tls.CurveID{tls.X25519MLKEM768}},
		{name: "X25519", names: []string{"X25519"}, want: []tls.CurveID{tls.X25519}},
		{name: "CurveP256", names: []string{"CurveP256"}, want: []tls.CurveID{tls.CurveP256}},
		{name: "CurveP384", names: []string{"CurveP384"}, want: []tls.CurveID{tls.CurveP384}},
		{name: "CurveP521", names: []string{"CurveP521"}, want: []tls.CurveID{tls.CurveP521}},
		{name: "order kept", names: []string{"CurveP384", "X25519"},
			want: []tls.CurveID{tls.CurveP384, tls.X25519}},
		{name: "OpenSSL name", names: []string{"prime256v1"}, wantErr: true},
		{name: "short name", names: []string{"P256"}, wantErr: true},
		{name: "lower case", names: []string{"x25519"}, wantErr: true},
		{name: "number", names: []string{"23"}, wantErr: true},
		{name: "empty", names: []string{""}, wantErr: true},
		{name: "one bad among good", names: []string{"X25519", "P-384"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseCurves(tc.names)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseCurves(%q) = %v, want an error", tc.names, got)
				}
				if got != nil {
					t.Errorf("ParseCurves returned %v with its error", got)
				}
				// An unknown name's error lists the accepted ones.
				for _, n := range []string{"X25519MLKEM768", "CurveP256", "CurveP521"} {
					if !strings.Contains(err.Error(), n) {
						t.Errorf("error %q does not list accepted curve %s", err, n)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCurves(%q): %v", tc.names, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ParseCurves(%q) = %v, want %v", tc.names, got, tc.want)
			}
		})
	}
}

// serverConfigWith returns the metrics listener's config for p's server
// keypair built from o; ClientCAs defaults to CA-A.
func (p *testPKI) serverConfigWith(t testing.TB, o policy.ServerOptions) *tls.Config {
	t.Helper()
	srv := p.srv.TLSCertificate()
	if o.ClientCAs == nil {
		o.ClientCAs = p.caA.Pool()
	}
	o.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return &srv, nil
	}
	cfg, err := policy.ServerConfig(o)
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	return cfg
}

// recordingClient is tlsClient that also keeps the client's view of the
// connection in *state. serverHandshake waits for the client to finish, so
// the caller may read *state once it returns.
func recordingClient(cfg *tls.Config, state *tls.ConnectionState) func(net.Conn) {
	return func(c net.Conn) {
		tc := tls.Client(c, cfg)
		if tc.Handshake() == nil {
			*state = tc.ConnectionState()
			_, _ = io.Copy(io.Discard, tc)
		}
	}
}

// TestServerConfigTLSKnobsTakeEffect drives real handshakes to check that
// each TLS option of ServerOptions changes what is negotiated.
func TestServerConfigTLSKnobsTakeEffect(t *testing.T) {
	p := newTestPKI(t)
	cli := issue(t, p.caA, devpki.ClientTemplate("cli-ok")).TLSCertificate()
	client := func(minV, maxV uint16, suites []uint16, curves []tls.CurveID) *tls.Config {
		cfg := p.clientConfig(&cli, 0)
		cfg.MinVersion, cfg.MaxVersion = minV, maxV
		cfg.CipherSuites, cfg.CurvePreferences = suites, curves
		return cfg
	}
	const (
		ecdsaAES128 = tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
		ecdsaAES256 = tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
		ecdsaChaCha = tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	)
	several := []uint16{ecdsaAES128, ecdsaChaCha, ecdsaAES256}

	tests := []struct {
		name   string
		opts   policy.ServerOptions
		client *tls.Config
		// Either the reason the handshake fails, or what it negotiates
		// (zero fields are not checked).
		wantErr     policy.Reason
		wantVersion uint16
		wantSuite   uint16
		wantCurve   tls.CurveID
	}{
		{name: "defaults negotiate TLS 1.3", client: client(0, 0, nil, nil),
			wantVersion: tls.VersionTLS13},
		{name: "min TLS13 refuses a TLS 1.2-only client",
			opts:    policy.ServerOptions{MinVersion: tls.VersionTLS13},
			client:  client(tls.VersionTLS12, tls.VersionTLS12, nil, nil),
			wantErr: policy.ReasonProtocolVersion},
		{name: "min TLS13 serves a TLS 1.3 client",
			opts:   policy.ServerOptions{MinVersion: tls.VersionTLS13},
			client: client(0, 0, nil, nil), wantVersion: tls.VersionTLS13},
		{name: "max TLS12 negotiates 1.2 with a client that could do 1.3",
			opts:   policy.ServerOptions{MaxVersion: tls.VersionTLS12},
			client: client(0, 0, nil, nil), wantVersion: tls.VersionTLS12},
		{name: "max TLS12 refuses a TLS 1.3-only client",
			opts:    policy.ServerOptions{MaxVersion: tls.VersionTLS12},
			client:  client(tls.VersionTLS13, 0, nil, nil),
			wantErr: policy.ReasonProtocolVersion},
		{name: "min below TLS 1.2 is raised",
			opts:    policy.ServerOptions{MinVersion: tls.VersionTLS10},
			client:  client(tls.VersionTLS10, tls.VersionTLS11, nil, nil),
			wantErr: policy.ReasonProtocolVersion},
		{name: "the configured suite is negotiated",
			opts:        policy.ServerOptions{CipherSuites: []uint16{ecdsaChaCha}},
			client:      client(0, tls.VersionTLS12, several, nil),
			wantVersion: tls.VersionTLS12, wantSuite: ecdsaChaCha},
		{name: "the configured suite wins over Go's preference",
			opts:        policy.ServerOptions{CipherSuites: []uint16{ecdsaAES256}},
			client:      client(0, tls.VersionTLS12, several, nil),
			wantVersion: tls.VersionTLS12, wantSuite: ecdsaAES256},
		{name: "a client without the configured suite fails",
			opts:    policy.ServerOptions{CipherSuites: []uint16{ecdsaAES256}},
			client:  client(0, tls.VersionTLS12, []uint16{ecdsaAES128, ecdsaChaCha}, nil),
			wantErr: policy.ReasonNoSharedParams},
		{name: "suites do not limit TLS 1.3",
			opts:        policy.ServerOptions{CipherSuites: []uint16{ecdsaAES256}},
			client:      client(tls.VersionTLS13, 0, nil, nil),
			wantVersion: tls.VersionTLS13},
		{name: "the configured curve is negotiated in TLS 1.3",
			opts:        policy.ServerOptions{Curves: []tls.CurveID{tls.CurveP384}},
			client:      client(tls.VersionTLS13, 0, nil, nil),
			wantVersion: tls.VersionTLS13, wantCurve: tls.CurveP384},
		{name: "the configured curve is negotiated in TLS 1.2",
			opts:        policy.ServerOptions{Curves: []tls.CurveID{tls.CurveP521}},
			client:      client(0, tls.VersionTLS12, nil, nil),
			wantVersion: tls.VersionTLS12, wantCurve: tls.CurveP521},
		{name: "a TLS 1.3 client with only another curve fails",
			opts:    policy.ServerOptions{Curves: []tls.CurveID{tls.CurveP384}},
			client:  client(tls.VersionTLS13, 0, nil, []tls.CurveID{tls.X25519}),
			wantErr: anyReason},
		{name: "a TLS 1.2 client with only another curve fails",
			opts:    policy.ServerOptions{Curves: []tls.CurveID{tls.CurveP384}},
			client:  client(0, tls.VersionTLS12, nil, []tls.CurveID{tls.X25519}),
			wantErr: policy.ReasonNoSharedParams},
		{name: "a client offering the curve among others gets it",
			opts: policy.ServerOptions{Curves: []tls.CurveID{tls.X25519}},
			client: client(0, 0, nil,
				[]tls.CurveID{tls.CurveP256, tls.CurveP384, tls.X25519}),
			wantCurve: tls.X25519},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var state tls.ConnectionState
			err := serverHandshake(t, p.serverConfigWith(t, tc.opts), 10*time.Second,
				recordingClient(tc.client, &state))

			got := policy.ClassifyHandshakeError(err, time.Now())
			switch {
			case tc.wantErr == anyReason && err == nil:
				t.Fatal("handshake succeeded, want it to fail")
			case tc.wantErr == anyReason:
				return
			case got != tc.wantErr:
				t.Fatalf("handshake: %v (%q), want reason %q", err, got, tc.wantErr)
			case tc.wantErr != "":
				return
			}
			if tc.wantVersion != 0 && state.Version != tc.wantVersion {
				t.Errorf("version = %s, want %s", tls.VersionName(state.Version),
					tls.VersionName(tc.wantVersion))
			}
			if tc.wantSuite != 0 && state.CipherSuite != tc.wantSuite {
				t.Errorf("cipher suite = %s, want %s", tls.CipherSuiteName(state.CipherSuite),
					tls.CipherSuiteName(tc.wantSuite))
			}
			if tc.wantCurve != 0 && state.CurveID != tc.wantCurve {
				t.Errorf("curve = %v, want %v", state.CurveID, tc.wantCurve)
			}
		})
	}
}

// anyReason in a table means "the handshake fails, for whatever reason".
const anyReason policy.Reason = "(any)"

// TestClassifyHandshakeErrorNoSharedKeyExchange checks that a TLS 1.3
// client offering no key exchange the server allows is no_shared_params:
// crypto/tls (Go 1.26) words it "tls: no key exchanges supported by both
// client and server", which was once read as "other". TLS 1.2 reports the
// same mismatch as "no cipher suite supported".
func TestClassifyHandshakeErrorNoSharedKeyExchange(t *testing.T) {
	p := newTestPKI(t)
	cli := issue(t, p.caA, devpki.ClientTemplate("cli-ok")).TLSCertificate()

	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			client := p.clientConfig(&cli, v.version)
			client.CurvePreferences = []tls.CurveID{tls.X25519}
			srv := p.serverConfigWith(t, policy.ServerOptions{
				Curves: []tls.CurveID{tls.CurveP384}})

			err := serverHandshake(t, srv, 10*time.Second, tlsClient(client))
			if err == nil {
				t.Fatal("handshake succeeded with no shared curve")
			}
			got := policy.ClassifyHandshakeError(err, time.Now())
			if got != policy.ReasonNoSharedParams {
				t.Errorf("ClassifyHandshakeError(%v) = %q, want %q",
					err, got, policy.ReasonNoSharedParams)
			}
		})
	}
}

func TestServerConfigVersionBounds(t *testing.T) {
	p := newTestPKI(t)
	srv := p.srv.TLSCertificate()
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &srv, nil }

	tests := []struct {
		name     string
		min, max uint16
		wantErr  bool
		wantMin  uint16
	}{
		{name: "max below min", min: tls.VersionTLS13, max: tls.VersionTLS12, wantErr: true},
		{name: "max below the TLS 1.2 floor", max: tls.VersionTLS11, wantErr: true},
		{name: "min raised above max", min: tls.VersionTLS10, max: tls.VersionTLS11,
			wantErr: true},
		{name: "both TLS12", min: tls.VersionTLS12, max: tls.VersionTLS12,
			wantMin: tls.VersionTLS12},
		{name: "both TLS13", min: tls.VersionTLS13, max: tls.VersionTLS13,
			wantMin: tls.VersionTLS13},
		{name: "min only", min: tls.VersionTLS13, wantMin: tls.VersionTLS13},
		{name: "max only", max: tls.VersionTLS12, wantMin: tls.VersionTLS12},
		{name: "old min raised", min: tls.VersionTLS10, wantMin: tls.VersionTLS12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := policy.ServerConfig(policy.ServerOptions{
				ClientCAs: p.caA.Pool(), GetCertificate: getCert,
				MinVersion: tc.min, MaxVersion: tc.max,
			})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ServerConfig(min %#x, max %#x) succeeded, want an error",
						tc.min, tc.max)
				}
				if cfg != nil {
					t.Error("ServerConfig returned a config with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("ServerConfig: %v", err)
			}
			if cfg.MinVersion != tc.wantMin || cfg.MaxVersion != tc.max {
				t.Errorf("versions = %#x..%#x, want %#x..%#x",
					cfg.MinVersion, cfg.MaxVersion, tc.wantMin, tc.max)
			}
		})
	}
}

// TestServerConfigParsedKnobs feeds the parsers' output to ServerConfig, as
// the config loader does, and checks a handshake honours all of it at once.
func TestServerConfigParsedKnobs(t *testing.T) {
	p := newTestPKI(t)
	cli := issue(t, p.caA, devpki.ClientTemplate("cli-ok")).TLSCertificate()

	maxV, err := policy.ParseTLSVersion("TLS12")
	if err != nil {
		t.Fatal(err)
	}
	suites, err := policy.ParseCipherSuites(
		[]string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"})
	if err != nil {
		t.Fatal(err)
	}
	curves, err := policy.ParseCurves([]string{"CurveP384"})
	if err != nil {
		t.Fatal(err)
	}

	var state tls.ConnectionState
	err = serverHandshake(t, p.serverConfigWith(t, policy.ServerOptions{
		MaxVersion: maxV, CipherSuites: suites, Curves: curves,
	}), 10*time.Second, recordingClient(p.clientConfig(&cli, 0), &state))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if state.Version != tls.VersionTLS12 ||
		state.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 ||
		state.CurveID != tls.CurveP384 {
		t.Errorf("negotiated %s, %s, %v; want TLS 1.2, the ChaCha20 suite, P-384",
			tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite),
			state.CurveID)
	}
}
