package body

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestGenerateSizeAndDeterminism(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"two bytes", 2},
		{"shorter than a line", 40},
		{"a few lines", 1000},
		{"100 KiB", 100 << 10},
		{"1 MiB", 1 << 20},
		{"not a round number", 1<<20 + 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Generate(tc.size), Generate(tc.size)
			if len(a) != tc.size {
				t.Fatalf("len = %d, want %d", len(a), tc.size)
			}
			if !bytes.Equal(a, b) {
				t.Fatal("two calls with the same size gave different bodies")
			}
			checkExposition(t, a)
		})
	}
}

// TestGeneratePrefix checks that a larger body starts with the samples of a
// smaller one: the generator's output depends on nothing but the size cut.
func TestGeneratePrefix(t *testing.T) {
	small, large := Generate(10<<10), Generate(100<<10)
	cut := bytes.LastIndexByte(small[:len(small)-1], '\n') // before the padding line
	if cut < 0 || !bytes.Equal(small[:cut], large[:cut]) {
		t.Fatal("the 10 KiB body is not a prefix of the 100 KiB one")
	}
}

// checkExposition checks the text format's line rules that a scraper
// relies on: whole lines, samples only after their family's TYPE, and a
// numeric value on every sample.
func checkExposition(t *testing.T, body []byte) {
	t.Helper()
	if body[len(body)-1] != '\n' {
		t.Fatal("body does not end with a newline")
	}
	typed := map[string]bool{}
	for i, line := range strings.Split(string(body[:len(body)-1]), "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "# HELP "):
		case strings.HasPrefix(line, "# TYPE "):
			typed[strings.Fields(line)[2]] = true
		case strings.HasPrefix(line, "#"):
		default:
			checkSample(t, i+1, line, typed)
		}
	}
}

func checkSample(t *testing.T, n int, line string, typed map[string]bool) {
	t.Helper()
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		t.Fatalf("line %d %q: no value", n, line)
	}
	if _, err := strconv.ParseFloat(line[sp+1:], 64); err != nil {
		t.Fatalf("line %d %q: value: %v", n, line, err)
	}
	name, _, _ := strings.Cut(line[:sp], "{")
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && typed[base] {
			return
		}
	}
	if !typed[name] {
		t.Fatalf("line %d %q: sample before its family's TYPE", n, line)
	}
}

func TestGzipRoundTrip(t *testing.T) {
	body := Generate(256 << 10)
	gz, err := Gzip(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(gz) >= len(body)/2 {
		t.Errorf("gzip body is %d bytes for %d: not compressible like an exposition",
			len(gz), len(body))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, body) {
		t.Fatal("gzip round trip changed the body")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  error
	}{
		{"102400", 102400, nil},
		{"100KiB", 100 << 10, nil},
		{"100K", 100 << 10, nil},
		{"1MiB", 1 << 20, nil},
		{"256M", 256 << 20, nil},
		{"1GiB", 1 << 30, nil},
		{"512B", 512, nil},
		{" 8KiB ", 8 << 10, nil},
		{"", 0, ErrBadSize},
		{"0", 0, ErrBadSize},
		{"-1KiB", 0, ErrBadSize},
		{"1.5MiB", 0, ErrBadSize},
		{"KiB", 0, ErrBadSize},
		{"10kb", 0, ErrBadSize},
		{"2048GiB", 0, ErrBadSize},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseSize(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int
		want string
	}{
		{100 << 10, "100KiB"},
		{1 << 20, "1MiB"},
		{256 << 20, "256MiB"},
		{1536 << 10, "1536KiB"},
		{1000, "1000B"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := FormatSize(tc.in); got != tc.want {
				t.Fatalf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
			}
			if back, err := ParseSize(tc.want); err != nil || back != tc.in {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.want, back, err, tc.in)
			}
		})
	}
}
