// Command diagd is a small daemon with the usual plain-text diag server:
// /metrics (client_golang), /healthz, /readyz and /debug/pprof/. It stands
// in for a real daemon in the demo, the examples and the tests.
//
// It listens on a TCP address or, with a unix:// prefix, on a unix socket:
//
//	diagd --listen 127.0.0.1:6060
//	diagd --listen unix:///run/diagd/diag.sock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:6060", "TCP `address`, or unix:///path for a socket")
	flag.Parse()

	if err := run(*listen); err != nil {
		log.Fatal(err)
	}
}

func run(listen string) error {
	l, err := openListener(listen)
	if err != nil {
		return err
	}
	// The address line is how the demo and the tests learn a port
	// chosen by the kernel.
	fmt.Printf("diagd listening on %s\n", l.Addr())

	srv := &http.Server{Handler: newMux(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func openListener(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		_ = os.Remove(path)
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func newMux() *http.ServeMux {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diagd_http_requests_total",
		Help: "HTTP requests served by diagd, by path.",
	}, []string{"path"})
	reg.MustRegister(
		requests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "diagd_up",
			Help: "Always 1 while diagd runs.",
		}, func() float64 { return 1 }),
	)

	count := func(path string, h http.Handler) http.Handler {
		c := requests.WithLabelValues(path)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.Inc()
			h.ServeHTTP(w, r)
		})
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})

	mux := http.NewServeMux()
	mux.Handle("/metrics", count("/metrics", promhttp.HandlerFor(reg,
		promhttp.HandlerOpts{EnableOpenMetrics: true})))
	mux.Handle("/healthz", count("/healthz", ok))
	mux.Handle("/readyz", count("/readyz", ok))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
