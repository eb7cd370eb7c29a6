package policy_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// testPKI is the PKI of cases.md: CA-A trusted, INT-A1 under it, CA-B not
// trusted, srv-ok the server's leaf.
type testPKI struct {
	caA, caB *devpki.CA
	intA     *devpki.CA
	srv      *devpki.Leaf
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{caA: newCA(t, "CA-A"), caB: newCA(t, "CA-B")}
	p.intA = newIntermediate(t, p.caA, "INT-A1")
	p.srv = issue(t, p.caA, devpki.ServerTemplate("sidecar.test", "127.0.0.1"))
	return p
}

// serverConfig returns the metrics listener's TLS config trusting pool.
func (p *testPKI) serverConfig(t testing.TB, pool *x509.CertPool) *tls.Config {
	t.Helper()
	srv := p.srv.TLSCertificate()
	cfg, err := policy.ServerConfig(policy.ServerOptions{
		ClientCAs: pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &srv, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clientConfig returns a client config that trusts CA-A and, like
// Prometheus, always presents cert (nil: no certificate), whatever CAs the
// server names as acceptable.
func (p *testPKI) clientConfig(cert *tls.Certificate, version uint16) *tls.Config {
	cfg := &tls.Config{
		RootCAs:    p.caA.Pool(),
		ServerName: "sidecar.test",
		MinVersion: version,
		MaxVersion: version,
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		}
	}
	return cfg
}

// serverHandshake accepts one loopback connection, runs the server side of
// a handshake under cfg with the given deadline while client drives the
// other end, and returns the server's handshake error.
func serverHandshake(t testing.TB, cfg *tls.Config, deadline time.Duration,
	client func(net.Conn)) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Accept must not outlive a client that failed to dial.
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))

	clientDone := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			clientDone <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		client(c)
		clientDone <- nil
	}()

	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(deadline))
	srv := tls.Server(conn, cfg)
	herr := srv.Handshake()
	srv.Close()

	if err := <-clientDone; err != nil {
		t.Fatalf("client: %v", err)
	}
	return herr
}

// tlsClient handshakes as a TLS client and then reads until the server
// closes, so that the server finishes its side before the client leaves.
func tlsClient(cfg *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		tc := tls.Client(c, cfg)
		if tc.Handshake() == nil {
			_, _ = io.Copy(io.Discard, tc)
		}
	}
}

// rawClient sends b and reads until the server closes.
func rawClient(b []byte) func(net.Conn) {
	return func(c net.Conn) {
		_, _ = c.Write(b)
		_, _ = io.Copy(io.Discard, c)
	}
}

var tlsVersions = []struct {
	name    string
	version uint16
}{
	{"TLS1.2", tls.VersionTLS12},
	{"TLS1.3", tls.VersionTLS13},
}

// TestClassifyHandshakeErrorClientCertificates drives real handshakes with
// the client certificates of cases C01 to C04 under TLS 1.2 and 1.3, and
// checks how the server's error is classified.
func TestClassifyHandshakeErrorClientCertificates(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	int2 := newIntermediate(t, p.intA, "INT-A2")

	tlsCert := func(l *devpki.Leaf) *tls.Certificate {
		c := l.TLSCertificate()
		return &c
	}
	leafOnly := func(l *devpki.Leaf) *tls.Certificate {
		return &tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key}
	}
	serverOnly := devpki.ClientTemplate("server-profile")
	serverOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	noEKU := devpki.ClientTemplate("no-eku")
	noEKU.ExtKeyUsage = nil
	bothEKU := devpki.ClientTemplate("both-eku")
	bothEKU.ExtKeyUsage = []x509.ExtKeyUsage{
		x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	viaInt := issue(t, p.intA, devpki.ClientTemplate("cli-int"))
	rootAndInt := policy.NewPool([]*x509.Certificate{p.caA.Cert, p.intA.Cert})

	tests := []struct {
		name string
		cert *tls.Certificate
		pool *x509.CertPool // server's client CAs; nil means CA-A only
		want policy.Reason
	}{
		{name: "C01a no client cert", want: policy.ReasonNoClientCert},
		{name: "C01b other CA",
			cert: tlsCert(issue(t, p.caB, devpki.ClientTemplate("cli-b"))),
			want: policy.ReasonUnknownAuthority},
		{name: "C01c self-signed", cert: tlsCert(&newCA(t, "self").Leaf),
			want: policy.ReasonSelfSigned},
		{name: "C01d trusted client",
			cert: tlsCert(issue(t, p.caA, devpki.ClientTemplate("cli-ok")))},

		{name: "C02a intermediate not sent", cert: leafOnly(viaInt),
			want: policy.ReasonUnknownAuthority},
		{name: "C02b intermediate sent", cert: tlsCert(viaInt)},
		{name: "C02c intermediate in the CA file", cert: leafOnly(viaInt), pool: rootAndInt},
		{name: "C02d depth 3 chain sent",
			cert: tlsCert(issue(t, int2, devpki.ClientTemplate("cli-deep")))},
		{name: "C02 intermediate only in the CA file, root missing", cert: tlsCert(viaInt),
			pool: p.intA.Pool()},

		{name: "C03a serverAuth-only EKU", cert: tlsCert(issue(t, p.caA, serverOnly)),
			want: policy.ReasonBadKeyUsage},
		{name: "C03b no EKU is any usage", cert: tlsCert(issue(t, p.caA, noEKU))},
		{name: "C03c clientAuth and serverAuth", cert: tlsCert(issue(t, p.caA, bothEKU))},

		{name: "C04a expired", cert: tlsCert(issue(t, p.caA,
			clientWithValidity("old", now.Add(-48*time.Hour), now.Add(-24*time.Hour)))),
			want: policy.ReasonExpired},
		{name: "C04b not yet valid", cert: tlsCert(issue(t, p.caA,
			clientWithValidity("early", now.Add(time.Hour), now.Add(48*time.Hour)))),
			want: policy.ReasonNotYetValid},
	}
	for _, tc := range tests {
		for _, v := range tlsVersions {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				pool := tc.pool
				if pool == nil {
					pool = p.caA.Pool()
				}
				err := serverHandshake(t, p.serverConfig(t, pool), 10*time.Second,
					tlsClient(p.clientConfig(tc.cert, v.version)))

				if tc.want == "" && err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				if got := policy.ClassifyHandshakeError(err, time.Now()); got != tc.want {
					t.Errorf("ClassifyHandshakeError(%v) = %q, want %q", err, got, tc.want)
				}
			})
		}
	}
}

// TestClassifyHandshakeErrorGoClientSelection pins what a client that picks
// its certificate by the server's acceptable CAs (crypto/tls's default with
// Config.Certificates) does with a certificate from another CA: it sends
// none, and the server sees no_client_cert rather than unknown_authority.
func TestClassifyHandshakeErrorGoClientSelection(t *testing.T) {
	p := newTestPKI(t)
	other := issue(t, p.caB, devpki.ClientTemplate("cli-b")).TLSCertificate()
	cfg := p.clientConfig(nil, 0)
	cfg.Certificates = []tls.Certificate{other}

	err := serverHandshake(t, p.serverConfig(t, p.caA.Pool()), 10*time.Second, tlsClient(cfg))
	if got := policy.ClassifyHandshakeError(err, time.Now()); got != policy.ReasonNoClientCert {
		t.Errorf("ClassifyHandshakeError(%v) = %q, want %q", err, got, policy.ReasonNoClientCert)
	}
}

// TestClassifyHandshakeErrorProtocol drives handshakes that fail before any
// certificate is looked at (C25, C26).
func TestClassifyHandshakeErrorProtocol(t *testing.T) {
	p := newTestPKI(t)
	cli := issue(t, p.caA, devpki.ClientTemplate("cli-ok")).TLSCertificate()

	oldClient := func(version uint16) *tls.Config {
		cfg := p.clientConfig(&cli, version)
		cfg.MinVersion = tls.VersionTLS10
		return cfg
	}
	distrustful := p.clientConfig(&cli, 0)
	distrustful.RootCAs = p.caB.Pool()
	// ECDHE_RSA suites only: the server's key is ECDSA.
	rsaOnly := p.clientConfig(&cli, tls.VersionTLS12)
	rsaOnly.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}

	tests := []struct {
		name     string
		client   func(net.Conn)
		deadline time.Duration
		want     policy.Reason
	}{
		{name: "C26a any version", client: tlsClient(p.clientConfig(&cli, 0))},
		{name: "C26c client limited to TLS 1.1", client: tlsClient(oldClient(tls.VersionTLS11)),
			want: policy.ReasonProtocolVersion},
		{name: "C26c client limited to TLS 1.0", client: tlsClient(oldClient(tls.VersionTLS10)),
			want: policy.ReasonProtocolVersion},
		{name: "C25a plain HTTP request",
			client: rawClient([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")),
			want:   policy.ReasonPlaintextHTTP},
		{name: "C25a plain HTTP HEAD",
			client: rawClient([]byte("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")),
			want:   policy.ReasonPlaintextHTTP},
		{name: "C25c random bytes are bad_record, not plaintext_http",
			client: rawClient([]byte("\x00\x01\x02\x03\x04\x05\x06\x07 random bytes")),
			want:   policy.ReasonBadRecord},
		{name: "C25c SSH banner is bad_record, not plaintext_http",
			client: rawClient([]byte("SSH-2.0-OpenSSH_9.6\r\n")),
			want:   policy.ReasonBadRecord},
		{name: "C25c SSLv2-style hello",
			client: rawClient([]byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15}),
			want:   policy.ReasonBadRecord},
		{name: "C25b connect then close", client: func(net.Conn) {}, want: policy.ReasonEOF},
		{name: "C25b half a record then close", client: func(c net.Conn) {
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01})
		}, want: policy.ReasonEOF},
		{name: "silent client past the handshake deadline", deadline: 100 * time.Millisecond,
			client: rawClient(nil), want: policy.ReasonTimeout},
		{name: "client does not trust the server", client: tlsClient(distrustful),
			want: policy.ReasonClientRejected},
		{name: "no shared cipher suite", client: tlsClient(rsaOnly),
			want: policy.ReasonNoSharedParams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			deadline := tc.deadline
			if deadline == 0 {
				deadline = 10 * time.Second
			}
			err := serverHandshake(t, p.serverConfig(t, p.caA.Pool()), deadline, tc.client)

			if tc.want == "" && err != nil {
				t.Fatalf("handshake failed: %v", err)
			}
			if got := policy.ClassifyHandshakeError(err, time.Now()); got != tc.want {
				t.Errorf("ClassifyHandshakeError(%v) = %q, want %q", err, got, tc.want)
			}
		})
	}
}

// TestClassifyHandshakeErrorWrapped checks that a caller may wrap the
// handshake error (as a listener does with the remote address) without
// changing its class, and that now decides expired against not yet valid.
func TestClassifyHandshakeErrorWrapped(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	expired := issue(t, p.caA, clientWithValidity("old", now.Add(-48*time.Hour),
		now.Add(-24*time.Hour))).TLSCertificate()

	err := serverHandshake(t, p.serverConfig(t, p.caA.Pool()), 10*time.Second,
		tlsClient(p.clientConfig(&expired, 0)))
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("handshake error %v is not a CertificateVerificationError", err)
	}

	tests := []struct {
		name string
		err  error
		now  time.Time
		want policy.Reason
	}{
		{name: "nil", err: nil, now: now, want: ""},
		{name: "as returned", err: err, now: now, want: policy.ReasonExpired},
		{name: "wrapped", err: fmt.Errorf("handshake from 127.0.0.1:1: %w", err), now: now,
			want: policy.ReasonExpired},
		{name: "judged before the certificate began", err: err,
			now: now.Add(-72 * time.Hour), want: policy.ReasonNotYetValid},
		{name: "wrapped EOF", err: fmt.Errorf("reading: %w", io.EOF), now: now,
			want: policy.ReasonEOF},
		{name: "deadline", err: &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded},
			now: now, want: policy.ReasonTimeout},
		{name: "closed listener", err: net.ErrClosed, now: now, want: policy.ReasonEOF},
		{name: "unknown", err: errors.New("something else"), now: now,
			want: policy.ReasonOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := policy.ClassifyHandshakeError(tc.err, tc.now); got != tc.want {
				t.Errorf("ClassifyHandshakeError(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestReasonIsNoise(t *testing.T) {
	tests := []struct {
		reason policy.Reason
		want   bool
	}{
		{policy.ReasonEOF, true},
		{policy.ReasonTimeout, true},
		{policy.ReasonNoClientCert, false},
		{policy.ReasonUnknownAuthority, false},
		{policy.ReasonPlaintextHTTP, false},
		{policy.ReasonBadRecord, false},
		{policy.ReasonOther, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.reason), func(t *testing.T) {
			if got := tc.reason.IsNoise(); got != tc.want {
				t.Errorf("%q.IsNoise() = %v, want %v", tc.reason, got, tc.want)
			}
		})
	}
}
