// Package bench is scrapebench's orchestrator: it starts the upstream, the
// direct mTLS server and every front as child processes on loopback, runs
// each workload against each front in alternating order and repeated
// rounds, measures the fronts' CPU time from /proc around every load, and
// reports medians as a table and as JSON.
package bench
