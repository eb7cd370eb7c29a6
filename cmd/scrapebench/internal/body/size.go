package body

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadSize is returned by [ParseSize] for a size it cannot read.
var ErrBadSize = errors.New("bad size")

// units are the suffixes [ParseSize] accepts, longest first so that "KiB"
// is not read as "B".
var units = []struct {
	suffix string
	factor int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

// ParseSize reads a byte count such as "102400", "100KiB", "1MiB" or
// "256M" (binary units in every spelling). It must be positive.
func ParseSize(s string) (int, error) {
	num, factor := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, factor = strings.TrimSuffix(num, u.suffix), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/factor {
		return 0, fmt.Errorf("%w %q: want a positive number of bytes, like 100KiB", ErrBadSize, s)
	}
	return int(n * factor), nil
}

// FormatSize writes n bytes the way [ParseSize] reads them, in the largest
// binary unit that divides it exactly.
func FormatSize(n int) string {
	for _, u := range units[:3] {
		if n >= int(u.factor) && int64(n)%u.factor == 0 {
			return strconv.FormatInt(int64(n)/u.factor, 10) + u.suffix
		}
	}
	return strconv.Itoa(n) + "B"
}
