package policy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy"
	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/policy/devpki"
)

// revokedAt is the revocation time written into every test CRL entry.
var revokedAt = time.Now().Add(-30 * time.Minute).UTC().Truncate(time.Second)

// crlDER returns a CRL signed by ca revoking serials, valid until next.
func crlDER(t testing.TB, ca *devpki.CA, next time.Time, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     bigOne(),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: next,
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: revokedAt})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("creating CRL of %q: %v", ca.Cert.Subject, err)
	}
	return der
}

// newCRL returns a parsed CRL signed by ca revoking serials, valid for a day.
func newCRL(t testing.TB, ca *devpki.CA, serials ...*big.Int) *x509.RevocationList {
	t.Helper()
	return parseCRL(t, crlDER(t, ca, time.Now().Add(24*time.Hour), serials...))
}

func parseCRL(t testing.TB, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parsing CRL: %v", err)
	}
	return crl
}

// pemCRL returns der as one PEM X509 CRL block.
func pemCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// newCRLSet builds a set from crls trusting cas, or fails the test.
func newCRLSet(t testing.TB, crls []*x509.RevocationList,
	cas ...*x509.Certificate) *policy.CRLSet {
	t.Helper()
	s, err := policy.NewCRLSet(crls, cas)
	if err != nil {
		t.Fatalf("NewCRLSet: %v", err)
	}
	return s
}

func TestParseCRLs(t *testing.T) {
	caA, caB := newCA(t, "CA-A"), newCA(t, "CA-B")
	day := time.Now().Add(24 * time.Hour)
	derA := crlDER(t, caA, day, big.NewInt(7))
	derB := crlDER(t, caB, day, big.NewInt(8), big.NewInt(9))
	two := append(pemCRL(derA), pemCRL(derB)...)
	badBody := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte("not DER")})

	tests := []struct {
		name    string
		data    []byte
		want    [][]byte // the DER of each CRL, in order
		wantErr bool
	}{
		{name: "PEM, one CRL", data: pemCRL(derA), want: [][]byte{derA}},
		{name: "PEM, two CRLs", data: two, want: [][]byte{derA, derB}},
		{name: "PEM with text around blocks", want: [][]byte{derA, derB},
			data: bytes.Join([][]byte{[]byte("Certificate Revocation List (CRL):\n"),
				pemCRL(derA), []byte("\n# next\n"), pemCRL(derB), []byte("end\n")}, nil)},
		{name: "PEM with CRLF line ends", want: [][]byte{derA},
			data: bytes.ReplaceAll(pemCRL(derA), []byte("\n"), []byte("\r\n"))},
		{name: "DER", data: derA, want: [][]byte{derA}},

		{name: "empty", data: nil, wantErr: true},
		{name: "only whitespace", data: []byte("\n \t\r\n"), wantErr: true},
		{name: "garbage", data: []byte("this is not a CRL"), wantErr: true},
		{name: "DER cut short", data: derA[:len(derA)/2], wantErr: true},
		{name: "certificate block", data: pemCert(caA.Cert), wantErr: true},
		{name: "certificate block after a CRL",
			data: append(pemCRL(derA), pemCert(caA.Cert)...), wantErr: true},
		{name: "DER certificate", data: caA.Cert.Raw, wantErr: true},
		{name: "CRL block holding garbage", data: badBody, wantErr: true},
		{name: "half-written trailing block", data: two[:len(two)-len(pemCRL(derB))/2],
			wantErr: true},
		{name: "trailing block with its BEGIN line only",
			data: append(pemCRL(derA), "-----BEGIN X509 CRL-----\n"...), wantErr: true},
		{name: "half a block only", data: pemCRL(derA)[:100], wantErr: true},
		{name: "BEGIN line only", data: []byte("-----BEGIN X509 CRL-----\n"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseCRLs(tc.data)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseCRLs returned %d CRLs, want an error", len(got))
				}
				if got != nil {
					t.Errorf("ParseCRLs returned %d CRLs with its error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCRLs: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParseCRLs returned %d CRLs, want %d", len(got), len(tc.want))
			}
			for i, crl := range got {
				if !bytes.Equal(crl.Raw, tc.want[i]) {
					t.Errorf("CRL %d is not the one written (issuer %q)", i, crl.Issuer)
				}
			}
		})
	}
}

// TestParseCRLsRefusesCorruptBlockBetweenGoodOnes checks that a damaged
// block is an error: encoding/pem skips a block it cannot decode (bad
// base64, or an END line that does not match its BEGIN) and returns the
// next one, so a CRL file whose middle list is damaged once loaded without
// that list, and its revocations silently went unenforced.
func TestParseCRLsRefusesCorruptBlockBetweenGoodOnes(t *testing.T) {
	ca := newCA(t, "CA-A")
	day := time.Now().Add(24 * time.Hour)
	first := pemCRL(crlDER(t, ca, day, big.NewInt(1)))
	last := pemCRL(crlDER(t, ca, day, big.NewInt(3)))

	tests := []struct {
		name   string
		middle []byte
	}{
		{name: "bad base64",
			middle: []byte("-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n")},
		{name: "mismatched END line",
			middle: bytes.Replace(pemCRL(crlDER(t, ca, day, big.NewInt(2))),
				[]byte("END X509 CRL"), []byte("END CERTIFICATE"), 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Join([][]byte{first, tc.middle, last}, nil)
			got, err := policy.ParseCRLs(data)
			if err == nil {
				t.Errorf("ParseCRLs loaded %d of 3 CRLs without an error", len(got))
			}
		})
	}
}

// TestParseCRLsRefusesTrailingData checks that data after a DER list is an
// error: x509.ParseRevocationList ignores whatever follows the first DER
// SEQUENCE (x509.ParseCertificate refuses it), so two DER lists
// concatenated into one file once loaded as the first alone, and the
// second list's revocations silently went unenforced.
func TestParseCRLsRefusesTrailingData(t *testing.T) {
	caA, caB := newCA(t, "CA-A"), newCA(t, "CA-B")
	day := time.Now().Add(24 * time.Hour)
	derA := crlDER(t, caA, day, big.NewInt(7))
	derB := crlDER(t, caB, day, big.NewInt(8))

	tests := []struct {
		name string
		data []byte
	}{
		{name: "two DER CRLs concatenated", data: append(bytes.Clone(derA), derB...)},
		{name: "DER with trailing zero bytes", data: append(bytes.Clone(derA), 0, 0)},
		{name: "PEM block with trailing bytes in its body",
			data: pemCRL(append(bytes.Clone(derA), derB...))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseCRLs(tc.data)
			if err == nil {
				t.Errorf("ParseCRLs returned %d CRL(s) and ignored the trailing data",
					len(got))
			}
		})
	}
}

func TestNewCRLSet(t *testing.T) {
	caA, caB := newCA(t, "CA-A"), newCA(t, "CA-B")
	intA := newIntermediate(t, caA, "INT-A1")
	sameName := newCA(t, "CA-A") // same subject as caA, other key

	tests := []struct {
		name    string
		crls    []*x509.RevocationList
		cas     []*x509.Certificate
		wantErr bool
	}{
		{name: "signed by the CA", crls: []*x509.RevocationList{newCRL(t, caA)},
			cas: []*x509.Certificate{caA.Cert}},
		{name: "signed by the second of two CAs", crls: []*x509.RevocationList{newCRL(t, caB)},
			cas: []*x509.Certificate{caA.Cert, caB.Cert}},
		{name: "one CRL per CA",
			crls: []*x509.RevocationList{newCRL(t, caA), newCRL(t, caB)},
			cas:  []*x509.Certificate{caA.Cert, caB.Cert}},
		{name: "signed by an intermediate in the CA list",
			crls: []*x509.RevocationList{newCRL(t, intA)},
			cas:  []*x509.Certificate{caA.Cert, intA.Cert}},
		{name: "signed by the same-named CA listed second",
			crls: []*x509.RevocationList{newCRL(t, sameName)},
			cas:  []*x509.Certificate{caA.Cert, sameName.Cert}},
		{name: "no CRLs", cas: []*x509.Certificate{caA.Cert}},

		{name: "signed by an unlisted CA", crls: []*x509.RevocationList{newCRL(t, caB)},
			cas: []*x509.Certificate{caA.Cert}, wantErr: true},
		{name: "signed by an intermediate not in the CA list",
			crls: []*x509.RevocationList{newCRL(t, intA)},
			cas:  []*x509.Certificate{caA.Cert}, wantErr: true},
		{name: "same issuer name, other key",
			crls: []*x509.RevocationList{newCRL(t, sameName)},
			cas:  []*x509.Certificate{caA.Cert}, wantErr: true},
		{name: "one good, one unlisted",
			crls: []*x509.RevocationList{newCRL(t, caA), newCRL(t, caB)},
			cas:  []*x509.Certificate{caA.Cert}, wantErr: true},
		{name: "no CAs", crls: []*x509.RevocationList{newCRL(t, caA)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := policy.NewCRLSet(tc.crls, tc.cas)
			if tc.wantErr {
				if err == nil {
					t.Fatal("NewCRLSet succeeded, want an error")
				}
				if s != nil {
					t.Error("NewCRLSet returned a set with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewCRLSet: %v", err)
			}
			if s == nil {
				t.Fatal("NewCRLSet returned neither a set nor an error")
			}
		})
	}
}

func TestCRLSetCheck(t *testing.T) {
	caA, caB := newCA(t, "CA-A"), newCA(t, "CA-B")
	intA := newIntermediate(t, caA, "INT-A1")
	twinA := newCA(t, "CA-A") // same subject as caA, other key

	leaf := issue(t, caA, devpki.ClientTemplate("cli-revoked")).Cert
	other := issue(t, caA, devpki.ClientTemplate("cli-ok")).Cert
	viaInt := issue(t, intA, devpki.ClientTemplate("cli-int")).Cert
	chain := [][]*x509.Certificate{{leaf, caA.Cert}}
	otherChain := [][]*x509.Certificate{{other, caA.Cert}}
	intChain := [][]*x509.Certificate{{viaInt, intA.Cert, caA.Cert}}
	cas := []*x509.Certificate{caA.Cert, caB.Cert, intA.Cert, twinA.Cert}

	tests := []struct {
		name   string
		crls   []*x509.RevocationList
		chains [][]*x509.Certificate
		want   *x509.Certificate // the certificate reported revoked, if any
	}{
		{name: "revoked leaf", crls: []*x509.RevocationList{newCRL(t, caA, leaf.SerialNumber)},
			chains: chain, want: leaf},
		{name: "revoked leaf among other serials", chains: chain, want: leaf,
			crls: []*x509.RevocationList{newCRL(t, caA, big.NewInt(1), leaf.SerialNumber,
				big.NewInt(2))}},
		{name: "revoked leaf, second of two CRLs", chains: chain, want: leaf,
			crls: []*x509.RevocationList{newCRL(t, caB, big.NewInt(5)),
				newCRL(t, caA, leaf.SerialNumber)}},
		{name: "unrevoked leaf of the same CA", chains: otherChain,
			crls: []*x509.RevocationList{newCRL(t, caA, leaf.SerialNumber)}},
		{name: "CRL revoking nothing", chains: chain,
			crls: []*x509.RevocationList{newCRL(t, caA)}},
		{name: "CA-B CRL with a colliding serial does not touch CA-A", chains: chain,
			crls: []*x509.RevocationList{newCRL(t, caB, leaf.SerialNumber)}},
		{name: "same-named CA with another key does not touch CA-A", chains: chain,
			crls: []*x509.RevocationList{newCRL(t, twinA, leaf.SerialNumber)}},
		{name: "revoked intermediate", chains: intChain, want: intA.Cert,
			crls: []*x509.RevocationList{newCRL(t, caA, intA.Cert.SerialNumber)}},
		{name: "leaf revoked by its intermediate", chains: intChain, want: viaInt,
			crls: []*x509.RevocationList{newCRL(t, intA, viaInt.SerialNumber)}},
		{name: "root CRL with the serial of a leaf its intermediate issued",
			chains: intChain,
			crls:   []*x509.RevocationList{newCRL(t, caA, viaInt.SerialNumber)}},
		{name: "intermediate CRL with the serial of the intermediate", chains: intChain,
			crls: []*x509.RevocationList{newCRL(t, intA, intA.Cert.SerialNumber)}},
		{name: "revoked in one of two chains", want: leaf,
			chains: [][]*x509.Certificate{otherChain[0], chain[0]},
			crls:   []*x509.RevocationList{newCRL(t, caA, leaf.SerialNumber)}},
		{name: "no chains", crls: []*x509.RevocationList{newCRL(t, caA, leaf.SerialNumber)}},
		{name: "no CRLs", chains: chain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := newCRLSet(t, tc.crls, cas...).Check(tc.chains)
			checkRevoked(t, err, tc.want)
		})
	}
}

// checkRevoked fails t unless err reports want revoked, or, with want nil,
// unless err is nil.
func checkRevoked(t testing.TB, err error, want *x509.Certificate) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Check: %v, want no error", err)
		}
		return
	}
	var revoked *policy.RevokedError
	if !errors.As(err, &revoked) {
		t.Fatalf("Check: %v, want a *RevokedError", err)
	}
	if revoked.Subject != want.Subject.String() {
		t.Errorf("revoked subject = %q, want %q", revoked.Subject, want.Subject)
	}
	if revoked.Serial != want.SerialNumber.Text(16) {
		t.Errorf("revoked serial = %s, want %x", revoked.Serial, want.SerialNumber)
	}
	if !revoked.RevokedAt.Equal(revokedAt) {
		t.Errorf("revoked at %v, want %v", revoked.RevokedAt, revokedAt)
	}
	// The message is the log's only account of which certificate it was.
	if msg := revoked.Error(); !strings.Contains(msg, revoked.Serial) ||
		!strings.Contains(msg, want.Subject.CommonName) {
		t.Errorf("error %q does not name serial %s and subject %q",
			msg, revoked.Serial, want.Subject)
	}
}

func TestCRLSetNil(t *testing.T) {
	ca := newCA(t, "CA-A")
	leaf := issue(t, ca, devpki.ClientTemplate("c")).Cert
	var s *policy.CRLSet

	if err := s.Check([][]*x509.Certificate{{leaf, ca.Cert}}); err != nil {
		t.Errorf("nil set: Check = %v, want nil", err)
	}
	if stale := s.Stale(time.Now()); stale != nil {
		t.Errorf("nil set: Stale = %d lists, want none", len(stale))
	}
	if lists := s.Lists(); lists != nil {
		t.Errorf("nil set: Lists = %d lists, want none", len(lists))
	}
}

func TestCRLSetLists(t *testing.T) {
	caA, caB := newCA(t, "CA-A"), newCA(t, "CA-B")
	crls := []*x509.RevocationList{newCRL(t, caB), newCRL(t, caA, big.NewInt(3))}

	got := newCRLSet(t, crls, caA.Cert, caB.Cert).Lists()
	if !slices.Equal(got, crls) {
		t.Errorf("Lists returned %d lists, want the %d given, in order", len(got), len(crls))
	}
	if got := newCRLSet(t, nil, caA.Cert).Lists(); len(got) != 0 {
		t.Errorf("set without CRLs: Lists returned %d lists", len(got))
	}
}

func TestCRLSetStale(t *testing.T) {
	ca, other := newCA(t, "CA-A"), newCA(t, "CA-B")
	leaf := issue(t, ca, devpki.ClientTemplate("cli-revoked")).Cert
	now := time.Now()
	expired := parseCRL(t, crlDER(t, ca, now.Add(-time.Minute), leaf.SerialNumber))
	fresh := parseCRL(t, crlDER(t, other, now.Add(time.Hour)))
	s := newCRLSet(t, []*x509.RevocationList{fresh, expired}, ca.Cert, other.Cert)

	tests := []struct {
		name string
		now  time.Time
		want []*x509.RevocationList
	}{
		{name: "now", now: now, want: []*x509.RevocationList{expired}},
		{name: "before either next update", now: now.Add(-2 * time.Minute)},
		{name: "after both", now: now.Add(2 * time.Hour),
			want: []*x509.RevocationList{fresh, expired}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Stale(tc.now)
			if len(got) != len(tc.want) {
				t.Fatalf("Stale returned %d lists, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("stale list %d is issued by %q, want %q",
						i, got[i].Issuer, tc.want[i].Issuer)
				}
			}
		})
	}

	// A list past its next update is still enforced.
	checkRevoked(t, s.Check([][]*x509.Certificate{{leaf, ca.Cert}}), leaf)
}

// TestServerConfigRefusesRevokedClient drives real handshakes through a
// listener whose ServerOptions carry CRLs (case C06 with crl_files).
func TestServerConfigRefusesRevokedClient(t *testing.T) {
	p := newTestPKI(t)
	revoked := issue(t, p.caA, devpki.ClientTemplate("cli-revoked"))
	ok := issue(t, p.caA, devpki.ClientTemplate("cli-ok"))
	viaInt := issue(t, p.intA, devpki.ClientTemplate("cli-int"))
	viaInt2 := issue(t, p.intA, devpki.ClientTemplate("cli-int-ok"))
	stale := parseCRL(t, crlDER(t, p.caA, time.Now().Add(-time.Minute), revoked.Cert.SerialNumber))

	tests := []struct {
		name string
		crls []*x509.RevocationList
		cli  *devpki.Leaf
		want *x509.Certificate // revoked certificate, nil if the client passes
	}{
		{name: "revoked leaf", cli: revoked, want: revoked.Cert,
			crls: []*x509.RevocationList{newCRL(t, p.caA, revoked.Cert.SerialNumber)}},
		{name: "unrevoked leaf of the same CA", cli: ok,
			crls: []*x509.RevocationList{newCRL(t, p.caA, revoked.Cert.SerialNumber)}},
		{name: "revoked by a stale CRL", cli: revoked, want: revoked.Cert,
			crls: []*x509.RevocationList{stale}},
		{name: "intermediate revoked by the root", cli: viaInt, want: p.intA.Cert,
			crls: []*x509.RevocationList{newCRL(t, p.caA, p.intA.Cert.SerialNumber)}},
		{name: "leaf revoked by its intermediate", cli: viaInt, want: viaInt.Cert,
			crls: []*x509.RevocationList{newCRL(t, p.intA, viaInt.Cert.SerialNumber)}},
		{name: "sibling of a leaf revoked by the intermediate", cli: viaInt2,
			crls: []*x509.RevocationList{newCRL(t, p.intA, viaInt.Cert.SerialNumber)}},
		{name: "CA-B CRL with the client's serial", cli: revoked,
			crls: []*x509.RevocationList{newCRL(t, p.caB, revoked.Cert.SerialNumber)}},
	}
	for _, tc := range tests {
		for _, v := range tlsVersions {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				set := newCRLSet(t, tc.crls, p.caA.Cert, p.caB.Cert, p.intA.Cert)
				cfg := p.serverConfigWith(t, policy.ServerOptions{CRLs: set})
				cert := tc.cli.TLSCertificate()

				err := serverHandshake(t, cfg, 10*time.Second,
					tlsClient(p.clientConfig(&cert, v.version)))
				if tc.want == nil {
					if err != nil {
						t.Fatalf("handshake of an unrevoked client failed: %v", err)
					}
					return
				}
				if got := policy.ClassifyHandshakeError(err, time.Now()); got !=
					policy.ReasonRevoked {
					t.Errorf("ClassifyHandshakeError(%v) = %q, want %q",
						err, got, policy.ReasonRevoked)
				}
				checkRevoked(t, err, tc.want)
			})
		}
	}
}

// TestServerConfigRevokedClientCannotResume checks the promise in
// ServerConfig: the CRL check runs on resumed sessions too, so a client
// revoked after its session began cannot resume it. A control run shows
// that the same client would otherwise resume.
func TestServerConfigRevokedClientCannotResume(t *testing.T) {
	p := newTestPKI(t)
	cli := issue(t, p.caA, devpki.ClientTemplate("cli-revoked"))
	cert := cli.TLSCertificate()
	none := newCRLSet(t, nil, p.caA.Cert)
	revoking := newCRLSet(t, []*x509.RevocationList{newCRL(t, p.caA, cli.Cert.SerialNumber)},
		p.caA.Cert)

	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		t.Fatal(err)
	}
	// server shares one ticket key across configs, so that the second can
	// resume the first one's sessions, and records whether the handshake
	// was a resumption.
	server := func(crls *policy.CRLSet, resumed *bool) *tls.Config {
		cfg := p.serverConfigWith(t, policy.ServerOptions{CRLs: crls})
		cfg.SetSessionTicketKeys([][32]byte{ticketKey})
		check := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			*resumed = cs.DidResume
			return check(cs)
		}
		return cfg
	}

	for _, v := range tlsVersions {
		for _, revoke := range []bool{false, true} {
			name := v.name + "/control"
			if revoke {
				name = v.name + "/revoked after the first handshake"
			}
			t.Run(name, func(t *testing.T) {
				client := p.clientConfig(&cert, v.version)
				client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

				var resumed bool
				err := serverHandshake(t, server(none, &resumed), 10*time.Second,
					tlsClient(client))
				if err != nil {
					t.Fatalf("first handshake: %v", err)
				}

				second := none
				if revoke {
					second = revoking
				}
				err = serverHandshake(t, server(second, &resumed), 10*time.Second,
					tlsClient(client))
				if !resumed {
					t.Fatalf("second handshake did not resume (err %v); "+
						"the test proves nothing", err)
				}
				if !revoke {
					if err != nil {
						t.Fatalf("resumed handshake: %v", err)
					}
					return
				}
				checkRevoked(t, err, cli.Cert)
			})
		}
	}
}
