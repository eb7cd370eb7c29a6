// Package policy decides who may connect to the metrics listener and what
// they may ask for once connected.
//
// It holds the pure parts of the proxy's security: the TLS configuration a
// handshake runs under, the trust in client CAs, the reasons a handshake is
// refused, and the rule that lets exactly one path through to the daemon.
// Nothing here opens a socket or reads a file; callers hand in bytes and
// requests and act on the answers.
package policy
