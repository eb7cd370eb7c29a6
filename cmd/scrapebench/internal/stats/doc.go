// Package stats holds the small statistics the bench reports: latency
// percentiles of one run, medians across rounds, and ratios to the direct
// server that fail loudly instead of dividing by zero.
package stats
