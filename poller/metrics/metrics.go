// Package metrics holds the poller's Prometheus metrics and its HTTP endpoint
// (/metrics, /readyz, /healthz) on a port apart from the function's.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the poller's counters and gauges; every state an event can be in is visible.
type Metrics struct {
	Registry     *prometheus.Registry
	Claimed      prometheus.Counter
	Delivered    prometheus.Counter // 2xx and marked done / removed
	Retried      prometheus.Counter // failed attempt, scheduled again
	Dead         prometheus.Counter // gave up after the maximum attempts
	SourceErrors prometheus.Counter
	InFlight     prometheus.Gauge
	Lag          prometheus.Gauge
	Backlog      prometheus.Gauge
	ready        atomic.Bool
}

// New registers the metrics, labelled with the trigger.
func New(trigger string) *Metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"trigger": trigger}
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
		reg.MustRegister(m)
		return m
	}
	g := func(name, help string) prometheus.Gauge {
		m := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
		reg.MustRegister(m)
		return m
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Metrics{
		Registry:     reg,
		Claimed:      c("skipper_poll_claimed_total", "Events claimed from the source."),
		Delivered:    c("skipper_poll_delivered_total", "Events the function answered with 2xx and that were marked done."),
		Retried:      c("skipper_poll_retried_total", "Failed deliveries scheduled for another attempt."),
		Dead:         c("skipper_poll_dead_total", "Events set aside after the maximum attempts (Redis: <list>:dead; SQL: skipped for the cooldown)."),
		SourceErrors: c("skipper_poll_source_errors_total", "Errors talking to the source (the poller reconnects with backoff)."),
		InFlight:     g("skipper_poll_in_flight", "Events claimed by this poller and not yet done, retried or dead."),
		Lag:          g("skipper_poll_lag_seconds", "Age of the oldest event this poller holds (MinIO: time since the delivered event happened)."),
		Backlog:      g("skipper_poll_backlog", "Pending events seen in the source at the last claim (Redis: list length; SQL: rows the query returned)."),
	}
}

// SetReady flips /readyz.
func (m *Metrics) SetReady(v bool) { m.ready.Store(v) }

// Serve listens on addr and serves until ctx ends. It returns once the listener is bound,
// so readiness can be probed immediately.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s (set SKIPPER_METRICS_ADDR to a free port): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener closed under us; the poller keeps working without metrics
		}
	}()
	return ln.Addr(), nil
}
