// Package integration tests mtls-metrics-proxy as operators run it: the
// real binary, started as a process of its own, in front of real daemons
// (the example diagd and Debian's prometheus-node-exporter), scraped by a
// real Prometheus server over https with client certificates, and stopped
// with real signals.
//
// The tests build the binaries themselves and bind every listener to
// 127.0.0.1. They need the Debian packages prometheus and
// prometheus-node-exporter; without them the tests that use them skip,
// except when CI=true, where a missing program is a failure.
package integration
