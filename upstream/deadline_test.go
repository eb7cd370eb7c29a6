package upstream

import (
	"net/http"
	"testing"
	"time"
)

func TestDeadline(t *testing.T) {
	const (
		timeout    = 10 * time.Second
		maxTimeout = 2 * time.Minute
	)
	f := NewForwarder(Options{Timeout: timeout, MaxTimeout: maxTimeout})

	tests := []struct {
		name   string
		header []string // nil: no header
		want   time.Duration
	}{
		{name: "no header", want: timeout},
		{name: "whole seconds", header: []string{"30"}, want: 30 * time.Second},
		{name: "fraction", header: []string{"9.5"}, want: 9500 * time.Millisecond},
		{name: "millisecond", header: []string{"1e-3"}, want: time.Millisecond},
		{name: "at the cap", header: []string{"120"}, want: maxTimeout},
		{name: "above the cap", header: []string{"300"}, want: maxTimeout},
		{name: "overflowing a Duration", header: []string{"1e10"}, want: maxTimeout},
		{name: "far beyond float range of a Duration", header: []string{"1e300"},
			want: maxTimeout},
		{name: "empty", header: []string{""}, want: timeout},
		{name: "zero", header: []string{"0"}, want: timeout},
		{name: "negative", header: []string{"-1"}, want: timeout},
		{name: "not a number", header: []string{"ten"}, want: timeout},
		{name: "NaN", header: []string{"NaN"}, want: timeout},
		{name: "infinity", header: []string{"+Inf"}, want: timeout},
		{name: "unit suffix", header: []string{"10s"}, want: timeout},
		{name: "first of several values", header: []string{"5", "50"}, want: 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != nil {
				h[ScrapeTimeoutHeader] = tc.header
			}
			if got := f.deadline(h); got != tc.want {
				t.Errorf("deadline(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}

// TestDeadlineHugeHeaderWithoutMaxTimeout checks an overflow once found
// by these tests: with no MaxTimeout, a scrape timeout too large for a
// time.Duration (here 1e10 seconds) converted to a negative duration, and
// the scrape timed out at once with a 504. It must get a long deadline.
func TestDeadlineHugeHeaderWithoutMaxTimeout(t *testing.T) {
	f := NewForwarder(Options{Timeout: 10 * time.Second})
	for _, v := range []string{"1e10", "1e300"} {
		t.Run(v, func(t *testing.T) {
			got := f.deadline(http.Header{ScrapeTimeoutHeader: {v}})
			if got <= 0 {
				t.Errorf("deadline(%q) = %v, want a positive duration", v, got)
			}
		})
	}
}
