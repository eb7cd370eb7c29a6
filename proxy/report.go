package proxy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a configuration would serve, as `check` prints it.
type Report struct {
	Config     string          `json:"config"`
	Listeners  []ListenerInfo  `json:"listeners"`
	Upstream   UpstreamInfo    `json:"upstream"`
	Keypairs   []CertReport    `json:"server_certificates,omitempty"`
	ClientCAs  []CertReport    `json:"client_cas,omitempty"`
	CRLs       []CRLReport     `json:"crls,omitempty"`
	Identity   *IdentityReport `json:"identity_rules,omitempty"`
	TLS        *TLSReport      `json:"tls,omitempty"`
	Warnings   []string        `json:"warnings"`
	OK         bool            `json:"ok"`
	Problems   []Problem       `json:"problems,omitempty"`
	CheckedAt  time.Time       `json:"checked_at"`
	ExpiryWarn string          `json:"expiry_warning,omitempty"`
}

// ListenerInfo describes one listener.
type ListenerInfo struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Scheme  string `json:"scheme"`
	Serves  string `json:"serves"`
	MTLS    bool   `json:"mtls"`
	Comment string `json:"comment,omitempty"`
}

// UpstreamInfo describes the daemon side.
type UpstreamInfo struct {
	URL         string `json:"url"`
	MetricsPath string `json:"metrics_path"`
	Timeout     string `json:"timeout"`
	MaxTimeout  string `json:"max_timeout"`
}

// CertReport describes one certificate.
type CertReport struct {
	File     string    `json:"file"`
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	DNSNames []string  `json:"dns_names,omitempty"`
	IPs      []string  `json:"ip_addresses,omitempty"`
	URIs     []string  `json:"uris,omitempty"`
	Key      string    `json:"key,omitempty"`
	NotAfter time.Time `json:"not_after"`
	Serial   string    `json:"serial"`
}

// CRLReport describes one revocation list.
type CRLReport struct {
	Issuer     string    `json:"issuer"`
	Revoked    int       `json:"revoked"`
	NextUpdate time.Time `json:"next_update"`
}

// IdentityReport lists the client identity rules.
type IdentityReport struct {
	SANs                []string `json:"sans,omitempty"`
	CommonNames         []string `json:"common_names,omitempty"`
	OrganizationalUnits []string `json:"organizational_units,omitempty"`
}

// TLSReport lists the TLS settings.
type TLSReport struct {
	MinVersion   string   `json:"min_version"`
	MaxVersion   string   `json:"max_version"`
	CipherSuites []string `json:"cipher_suites,omitempty"`
	Curves       []string `json:"curves,omitempty"`
}

// Report describes what p would serve, judged at now.
func (p *Proxy) Report(now time.Time) Report {
	c := p.cfg
	r := Report{Config: c.File, OK: true, CheckedAt: now, Warnings: p.Warnings()}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	r.Upstream = UpstreamInfo{
		URL:         c.Upstream.Address.String(),
		MetricsPath: c.Upstream.MetricsPath,
		Timeout:     c.Upstream.Timeout.String(),
		MaxTimeout:  c.Upstream.MaxTimeout.String(),
	}
	r.Listeners = p.listenerInfo()

	if p.certs == nil {
		return r
	}
	ms := c.MetricsService
	r.ExpiryWarn = ms.ExpiryWarning.String()
	m := p.certs.Current().material
	for i, kp := range m.keypairs {
		r.Keypairs = append(r.Keypairs, certReport(ms.Keypairs[i].CertFile, kp.Leaf))
	}
	for _, f := range m.cas {
		for _, ca := range f.certs {
			r.ClientCAs = append(r.ClientCAs, certReport(f.path, ca))
		}
	}
	if m.crls != nil {
		for _, l := range m.crls.Lists() {
			r.CRLs = append(r.CRLs, CRLReport{Issuer: l.Issuer.String(),
				Revoked: len(l.RevokedCertificateEntries), NextUpdate: l.NextUpdate})
		}
	}
	if !ms.TLS.Identity.Empty() {
		r.Identity = &IdentityReport{SANs: ms.ClientAllowedSANs,
			CommonNames:         ms.ClientAllowedCommonNames,
			OrganizationalUnits: ms.ClientAllowedOrganizationalUnits}
	}
	r.TLS = &TLSReport{MinVersion: orDefault(ms.MinVersion, "TLS12"),
		MaxVersion: orDefault(ms.MaxVersion, "TLS13"), CipherSuites: ms.CipherSuites,
		Curves: ms.CurvePreferences}
	r.Warnings = append(r.Warnings, p.checkWarnings(r, now)...)
	return r
}

func (p *Proxy) listenerInfo() []ListenerInfo {
	c := p.cfg
	var out []ListenerInfo
	if ms := c.MetricsService; ms.Enabled {
		li := ListenerInfo{Name: "metrics", Addr: ms.ListenAddr, Scheme: "https", MTLS: ms.MTLS,
			Serves: c.Upstream.MetricsPath}
		if ms.OwnMetricsPath != "" {
			li.Serves += " " + ms.OwnMetricsPath
		}
		if !ms.MTLS {
			li.Scheme, li.Comment = "http", "NO client verification"
		} else {
			li.Comment = "client certificate required"
		}
		out = append(out, li)
	}
	if c.Diag.ListenAddr != "" {
		li := ListenerInfo{Name: "diag", Addr: c.Diag.ListenAddr, Scheme: "http",
			Serves: "everything but " + c.Upstream.MetricsPath}
		if !c.MetricsService.Enabled || c.Diag.KeepMetrics {
			li.Serves = "everything, " + c.Upstream.MetricsPath + " included"
		}
		out = append(out, li)
	}
	if c.Health.ListenAddr != "" {
		out = append(out, ListenerInfo{Name: "health", Addr: c.Health.ListenAddr,
			Scheme: "http", Serves: "/healthz /readyz"})
	}
	return out
}

// checkWarnings adds what will bite later: expiry inside the window, and
// certificates that do not cover how targets are addressed.
func (p *Proxy) checkWarnings(r Report, now time.Time) []string {
	var w []string
	window := p.cfg.MetricsService.ExpiryWarning.Duration
	for _, set := range []struct {
		kind  string
		certs []CertReport
	}{{"server certificate", r.Keypairs}, {"client CA", r.ClientCAs}} {
		for _, c := range set.certs {
			if c.NotAfter.Sub(now) <= window {
				w = append(w, fmt.Sprintf("%s %q in %s expires %s", set.kind, c.Subject,
					c.File, relative(c.NotAfter, now)))
			}
		}
	}

	anyIP := false
	for _, c := range r.Keypairs {
		anyIP = anyIP || len(c.IPs) > 0
	}
	if !anyIP {
		w = append(w, "no server certificate has an IP SAN: a Prometheus that scrapes "+
			"targets by IP (Kubernetes service discovery) needs tls_config.server_name")
	}
	host, _, _ := net.SplitHostPort(p.cfg.MetricsService.ListenAddr)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && anyIP && !coversIP(r, ip) {
		w = append(w, fmt.Sprintf("listen_addr is %s, but no server certificate has "+
			"that IP SAN", ip))
	}
	return w
}

func coversIP(r Report, ip net.IP) bool {
	for _, c := range r.Keypairs {
		for _, s := range c.IPs {
			if net.ParseIP(s).Equal(ip) {
				return true
			}
		}
	}
	return false
}

func certReport(file string, c *x509.Certificate) CertReport {
	r := CertReport{File: file, Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		DNSNames: c.DNSNames, Key: keyDescription(c), NotAfter: c.NotAfter.UTC(),
		Serial: c.SerialNumber.Text(16)}
	for _, ip := range c.IPAddresses {
		r.IPs = append(r.IPs, ip.String())
	}
	for _, u := range c.URIs {
		r.URIs = append(r.URIs, u.String())
	}
	return r
}

func keyDescription(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// relative says when t is, from now, in days.
func relative(t, now time.Time) string {
	days := int(t.Sub(now).Hours() / 24)
	stamp := t.UTC().Format("2006-01-02 15:04 UTC")
	switch {
	case t.Before(now):
		return fmt.Sprintf("%s (EXPIRED %d days ago)", stamp, -days)
	case days == 0:
		return fmt.Sprintf("%s (today)", stamp)
	}
	return fmt.Sprintf("%s (in %d days)", stamp, days)
}

// WriteText prints the report for a person.
func (r Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "configuration: %s\n\n", r.Config)

	b.WriteString("listeners\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, l := range r.Listeners {
		fmt.Fprintf(tw, "  %s\t%s://%s\t%s", l.Name, l.Scheme, l.Addr, l.Serves)
		if l.Comment != "" {
			fmt.Fprintf(tw, " (%s)", l.Comment)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	fmt.Fprintf(b, "\nupstream\n  %s, path %s (timeout %s, at most %s)\n", r.Upstream.URL,
		r.Upstream.MetricsPath, r.Upstream.Timeout, r.Upstream.MaxTimeout)

	if len(r.Keypairs) > 0 {
		b.WriteString("\nserver certificates (no SNI: the one with the listener's IP, " +
			"else the first)\n")
		for i, c := range r.Keypairs {
			fmt.Fprintf(b, "  [%d] %s\n", i, c.File)
			writeCert(b, c, r.CheckedAt)
		}
	}
	if len(r.ClientCAs) > 0 {
		b.WriteString("\nclient CAs\n")
		for _, c := range r.ClientCAs {
			fmt.Fprintf(b, "  %s\n      %s, expires %s\n", c.File, c.Subject,
				relative(c.NotAfter, r.CheckedAt))
		}
	}
	if len(r.CRLs) > 0 {
		b.WriteString("\nrevocation lists\n")
		for _, l := range r.CRLs {
			fmt.Fprintf(b, "  %s: %d revoked, next update %s\n", l.Issuer, l.Revoked,
				l.NextUpdate.UTC().Format("2006-01-02 15:04 UTC"))
		}
	}
	if r.TLS != nil {
		fmt.Fprintf(b, "\nTLS\n  versions %s to %s; cipher suites: %s; curves: %s\n",
			r.TLS.MinVersion, r.TLS.MaxVersion, listOr(r.TLS.CipherSuites, "Go's defaults"),
			listOr(r.TLS.Curves, "Go's defaults"))
		b.WriteString("\nwho may scrape\n")
		if r.Identity == nil {
			b.WriteString("  any client certificate the CAs signed (no identity rules)\n")
		} else {
			writeRule(b, "SANs", r.Identity.SANs)
			writeRule(b, "common names", r.Identity.CommonNames)
			writeRule(b, "OUs", r.Identity.OrganizationalUnits)
		}
	}

	if len(r.Warnings) > 0 {
		b.WriteString("\nwarnings\n")
		for _, wn := range r.Warnings {
			fmt.Fprintf(b, "  - %s\n", wn)
		}
	}
	b.WriteString("\nconfiguration OK\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCert(b *strings.Builder, c CertReport, now time.Time) {
	fmt.Fprintf(b, "      subject  %s\n      issuer   %s\n", c.Subject, c.Issuer)
	if len(c.DNSNames) > 0 {
		fmt.Fprintf(b, "      DNS      %s\n", strings.Join(c.DNSNames, ", "))
	}
	if len(c.IPs) > 0 {
		fmt.Fprintf(b, "      IP       %s\n", strings.Join(c.IPs, ", "))
	}
	if len(c.URIs) > 0 {
		fmt.Fprintf(b, "      URI      %s\n", strings.Join(c.URIs, ", "))
	}
	fmt.Fprintf(b, "      key      %s\n      expires  %s\n", c.Key, relative(c.NotAfter, now))
}

func writeRule(b *strings.Builder, what string, v []string) {
	if len(v) > 0 {
		fmt.Fprintf(b, "  %s: %s\n", what, strings.Join(v, ", "))
	}
}

func listOr(v []string, d string) string {
	if len(v) == 0 {
		return d
	}
	return strings.Join(v, ", ")
}
