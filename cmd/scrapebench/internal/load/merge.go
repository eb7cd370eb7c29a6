package load

import (
	"time"

	"github.com/mtls-metrics-proxy/mtls-metrics-proxy/cmd/scrapebench/internal/stats"
)

// merge adds up the workers' results of the timed part.
func (g *Generator) merge(elapsed time.Duration, dials int64) Result {
	out := Result{
		ErrorKinds:      map[string]int64{},
		DurationSeconds: elapsed.Seconds(),
		Conns:           dials,
	}
	var lat []time.Duration
	for _, w := range g.workers {
		out.Scrapes += w.res.Scrapes
		out.Errors += w.res.Errors
		out.BodyBytes += w.res.BodyBytes
		out.Resumed += w.res.Resumed
		for k, v := range w.res.ErrorKinds {
			out.ErrorKinds[k] += v
		}
		if out.FirstError == "" {
			out.FirstError = w.res.FirstError
		}
		lat = append(lat, w.lat...)
	}
	if len(out.ErrorKinds) == 0 {
		out.ErrorKinds = nil
	}
	stats.SortDurations(lat)
	out.P50Ms, out.P99Ms = millis(lat, 50), millis(lat, 99)
	if elapsed > 0 {
		out.PerSecond = float64(out.Scrapes) / elapsed.Seconds()
	}
	if g.first != nil {
		out.TLS = tlsInfo(g.first.TLS)
		out.Proto = g.first.Proto
	}
	return out
}
