// Package load is the bench's scraper: workers that each scrape in a loop
// with the headers and client certificate a Prometheus server presents,
// read and check every body, and time every scrape. It runs in a process
// of its own, so that its CPU is never counted as a front's.
package load
