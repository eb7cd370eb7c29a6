package stats

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be in ascending order: the smallest value that at
// least p percent of the values are less than or equal to. ok is false
// when sorted is empty or p is out of range.
func Percentile(sorted []time.Duration, p float64) (v time.Duration, ok bool) {
	if len(sorted) == 0 || p <= 0 || p > 100 || math.IsNaN(p) {
		return 0, false
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1], true
}

// SortDurations sorts d in place and returns it, for [Percentile].
func SortDurations(d []time.Duration) []time.Duration {
	slices.Sort(d)
	return d
}

// Median returns the median of xs (the mean of the two middle values for
// an even count), without reordering xs. ok is false when xs is empty.
func Median(xs []float64) (m float64, ok bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid], true
	}
	return (s[mid-1] + s[mid]) / 2, true
}

// Ratio returns num/den. ok is false when either is not a finite number
// or den is not positive: a ratio to a failed or empty measurement is
// reported as missing, never as zero or infinity.
func Ratio(num, den float64) (r float64, ok bool) {
	if den <= 0 || math.IsNaN(num) || math.IsInf(num, 0) || math.IsInf(den, 0) ||
		math.IsNaN(den) {
		return 0, false
	}
	return num / den, true
}
