// Package upstream talks to the daemon's plain-text diag server: it parses
// the upstream address (TCP or a unix socket), keeps the connections to it,
// forwards a scrape to the fixed metrics path and streams the answer back,
// and maps failures to the status a scraper should see.
//
// It knows nothing of TLS or client identity; by the time a request gets
// here, the proxy has decided it may pass.
package upstream
