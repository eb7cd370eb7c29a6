// Package body makes the scrape bodies the bench serves: deterministic
// Prometheus text expositions of an exact size, so that every front of a
// run forwards the same bytes and a short or padded answer is caught by
// its length alone.
package body
