// Package serve holds the two servers the bench runs as processes of their
// own: the daemon's plain-text diag server ("upstream") and the direct
// mTLS server that serves the same bytes in-process, the limit any front
// is measured against.
package serve
