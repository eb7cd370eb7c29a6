// Package proxy runs mtls-metrics-proxy's listeners: it loads and checks
// the configuration, keeps the server keypairs and client CAs, terminates
// TLS on the metrics listener, forwards the one allowed path through
// package upstream, serves the clear-text diag listener, and shuts all of
// it down gracefully.
//
// How a request is judged is package policy's business; how it reaches the
// daemon is package upstream's. This package wires them to sockets, files,
// logs and signals.
package proxy
