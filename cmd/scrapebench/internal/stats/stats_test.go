package stats

import (
	"math"
	"slices"
	"testing"
	"time"
)

func ms(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
		ok     bool
	}{
		{"empty", nil, 50, 0, false},
		{"p zero", ms(1, 2), 0, 0, false},
		{"p above 100", ms(1, 2), 101, 0, false},
		{"p NaN", ms(1, 2), math.NaN(), 0, false},
		{"one value p50", ms(7), 50, 7 * time.Millisecond, true},
		{"one value p99", ms(7), 99, 7 * time.Millisecond, true},
		{"two values p50", ms(1, 9), 50, 1 * time.Millisecond, true},
		{"two values p99", ms(1, 9), 99, 9 * time.Millisecond, true},
		{"hundred p50", hundred, 50, 50 * time.Millisecond, true},
		{"hundred p99", hundred, 99, 99 * time.Millisecond, true},
		{"hundred p100", hundred, 100, 100 * time.Millisecond, true},
		{"tiny p", hundred, 0.001, 1 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Percentile(tc.sorted, tc.p)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Percentile(p=%v) = %v, %v; want %v, %v", tc.p, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSortDurations(t *testing.T) {
	got := SortDurations(ms(3, 1, 2))
	if !slices.Equal(got, ms(1, 2, 3)) {
		t.Fatalf("SortDurations = %v", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
		ok   bool
	}{
		{"empty", nil, 0, false},
		{"one", []float64{4}, 4, true},
		{"odd unsorted", []float64{9, 1, 5}, 5, true},
		{"even", []float64{4, 1, 3, 2}, 2.5, true},
		{"outlier ignored", []float64{100, 101, 1e9}, 101, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.xs)
			got, ok := Median(tc.xs)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Median(%v) = %v, %v; want %v, %v", tc.xs, got, ok, tc.want, tc.ok)
			}
			if !slices.Equal(in, tc.xs) {
				t.Fatalf("Median reordered its input: %v", tc.xs)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		name     string
		num, den float64
		want     float64
		ok       bool
	}{
		{"plain", 125, 100, 1.25, true},
		{"below one", 50, 200, 0.25, true},
		{"zero numerator", 0, 10, 0, true},
		{"zero denominator", 10, 0, 0, false},
		{"negative denominator", 10, -1, 0, false},
		{"NaN numerator", math.NaN(), 1, 0, false},
		{"infinite denominator", 1, math.Inf(1), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Ratio(tc.num, tc.den)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Ratio(%v, %v) = %v, %v; want %v, %v",
					tc.num, tc.den, got, ok, tc.want, tc.ok)
			}
		})
	}
}
