package body

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// seed fixes the generator's random values: the same size always gives the
// same bytes, in every process of a run and from one run to the next.
var seed = [2]uint64{0x5c4a_9e37, 0x0dd5_ea5e}

// Vocabulary of the generated series. Names and labels look like a daemon's
// own instrumentation, so that compression ratios and line lengths are those
// of a real exposition rather than of random text.
var (
	subsystems = []string{
		"http", "grpc", "storage", "cache", "queue", "scheduler",
		"rpc_client", "wal", "compactor", "index",
	}
	counterNames = []string{
		"requests_total", "errors_total", "bytes_written_total", "retries_total",
	}
	gaugeNames     = []string{"in_flight", "queue_length", "open_connections", "memory_bytes"}
	histogramNames = []string{
		"request_duration_seconds", "response_size_bytes", "lock_wait_seconds",
	}
	handlers = []string{
		"/api/v1/query", "/api/v1/series", "/api/v1/labels", "/healthz", "/metrics",
	}
	codes   = []string{"200", "404", "500"}
	methods = []string{"get", "post"}
	buckets = []string{
		"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
	}
)

// Generate returns a Prometheus text exposition (format 0.0.4) of exactly
// size bytes: whole families of counters, gauges and histograms, cut at a
// line boundary and padded to size with one comment line. The same size
// always gives the same bytes.
func Generate(size int) []byte {
	out := make([]byte, 0, size)
	rng := rand.New(rand.NewPCG(seed[0], seed[1]))
	var fam []byte
	for i := 0; ; i++ {
		fam = appendFamily(fam[:0], i, rng)
		for rest := fam; len(rest) > 0; {
			n := bytes.IndexByte(rest, '\n') + 1
			if len(out)+n > size {
				return pad(out, size)
			}
			out = append(out, rest[:n]...)
			rest = rest[n:]
		}
	}
}

// pad fills out to size with a comment line, which parsers ignore.
func pad(out []byte, size int) []byte {
	switch r := size - len(out); {
	case r == 0:
		return out
	case r == 1:
		// An empty line is valid in the text format and ignored.
		return append(out, '\n')
	default:
		out = append(out, '#')
		out = append(out, strings.Repeat(" ", r-2)...)
		return append(out, '\n')
	}
}

// appendFamily appends family i: its HELP and TYPE lines and its samples.
// The kind cycles through counter, gauge and histogram; names stay unique
// by adding a generation suffix once every combination has been used.
func appendFamily(b []byte, i int, rng *rand.Rand) []byte {
	kind := i % 3
	sub := subsystems[(i/3)%len(subsystems)]
	combo := i / (3 * len(subsystems))
	var names []string
	switch kind {
	case 0:
		names = counterNames
	case 1:
		names = gaugeNames
	default:
		names = histogramNames
	}
	name := names[combo%len(names)]
	if gen := combo / len(names); gen > 0 {
		sub += "_g" + strconv.Itoa(gen)
	}
	full := "daemon_" + sub + "_" + name

	switch kind {
	case 0:
		what := strings.ReplaceAll(strings.TrimSuffix(name, "_total"), "_", " ")
		b = appendHeader(b, full, "counter", "Total number of "+what+".")
		return appendCounters(b, full, rng)
	case 1:
		b = appendHeader(b, full, "gauge", "Current "+strings.ReplaceAll(name, "_", " ")+".")
		return appendGauges(b, full, rng)
	default:
		b = appendHeader(b, full, "histogram", "Distribution of "+
			strings.ReplaceAll(name, "_", " ")+".")
		return appendHistograms(b, full, rng)
	}
}

func appendHeader(b []byte, name, typ, help string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

// appendCounters writes one series per handler, method and code.
func appendCounters(b []byte, name string, rng *rand.Rand) []byte {
	for _, h := range handlers {
		for _, m := range methods {
			for _, c := range codes {
				b = append(b, name...)
				b = append(b, `{code="`...)
				b = append(b, c...)
				b = append(b, `",handler="`...)
				b = append(b, h...)
				b = append(b, `",method="`...)
				b = append(b, m...)
				b = append(b, `"} `...)
				b = strconv.AppendUint(b, rng.Uint64N(1e9), 10)
				b = append(b, '\n')
			}
		}
	}
	return b
}

// appendGauges writes one series per shard.
func appendGauges(b []byte, name string, rng *rand.Rand) []byte {
	for shard := range 8 {
		b = append(b, name...)
		b = append(b, `{shard="`...)
		b = strconv.AppendInt(b, int64(shard), 10)
		b = append(b, `"} `...)
		b = strconv.AppendFloat(b, rng.Float64()*1e4, 'g', -1, 64)
		b = append(b, '\n')
	}
	return b
}

// appendHistograms writes a classic histogram per handler: cumulative
// buckets, then _sum and _count.
func appendHistograms(b []byte, name string, rng *rand.Rand) []byte {
	for _, h := range handlers {
		var count uint64
		for _, le := range buckets {
			count += rng.Uint64N(5000)
			b = append(b, name...)
			b = append(b, `_bucket{handler="`...)
			b = append(b, h...)
			b = append(b, `",le="`...)
			b = append(b, le...)
			b = append(b, `"} `...)
			b = strconv.AppendUint(b, count, 10)
			b = append(b, '\n')
		}
		b = append(b, name...)
		b = append(b, `_sum{handler="`...)
		b = append(b, h...)
		b = append(b, `"} `...)
		b = strconv.AppendFloat(b, rng.Float64()*float64(count), 'g', -1, 64)
		b = append(b, '\n')
		b = append(b, name...)
		b = append(b, `_count{handler="`...)
		b = append(b, h...)
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, count, 10)
		b = append(b, '\n')
	}
	return b
}

// Gzip compresses body once, at the default level, as a daemon's
// instrumentation library would on every scrape.
func Gzip(body []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(body); err != nil {
		return nil, fmt.Errorf("compressing the body: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the body: %w", err)
	}
	return buf.Bytes(), nil
}
