// Package metrics holds the poller's Prometheus metrics and its HTTP endpoint
// (/metrics, /readyz, /healthz) on a port apart from the function's.
//
// The exposition is written by hand in the Prometheus text format 0.0.4: the poller has
// eight counters and gauges, and the client library with its protobuf dependency made up a
// good part of the sidecar's binary and resident memory.
package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Counter only goes up.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value is the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge holds a float64 that can go up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set stores v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Value is the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// Metrics are the poller's counters and gauges; every state an event can be in is visible.
type Metrics struct {
	Claimed      *Counter
	Delivered    *Counter // 2xx and marked done / removed
	Retried      *Counter // failed attempt, scheduled again
	Dead         *Counter // gave up after the maximum attempts
	SourceErrors *Counter
	InFlight     *Gauge
	Lag          *Gauge
	Backlog      *Gauge
	ready        atomic.Bool

	labels string // `{trigger="..."}`, escaped once
	series []series
}

// series is one exported metric: its HELP, TYPE and how to read its value.
type series struct {
	name, help, kind string
	value            func() string
}

// processStart is close enough to the exec (package initialisation runs before main).
var processStart = time.Now()

// New creates the metrics, labelled with the trigger.
func New(trigger string) *Metrics {
	m := &Metrics{
		Claimed: &Counter{}, Delivered: &Counter{}, Retried: &Counter{}, Dead: &Counter{}, SourceErrors: &Counter{},
		InFlight: &Gauge{}, Lag: &Gauge{}, Backlog: &Gauge{},
		labels: `{trigger="` + escapeLabel(trigger) + `"}`,
	}
	c := func(name, help string, v *Counter) {
		m.series = append(m.series, series{name, help, "counter", func() string { return strconv.FormatUint(v.Value(), 10) }})
	}
	g := func(name, help string, v *Gauge) {
		m.series = append(m.series, series{name, help, "gauge", func() string { return formatFloat(v.Value()) }})
	}
	c("skipper_poll_claimed_total", "Events claimed from the source.", m.Claimed)
	c("skipper_poll_delivered_total", "Events the function answered with 2xx and that were marked done.", m.Delivered)
	c("skipper_poll_retried_total", "Failed deliveries scheduled for another attempt.", m.Retried)
	c("skipper_poll_dead_total", "Events set aside after the maximum attempts (Redis: <list>:dead; SQL: skipped for the cooldown).", m.Dead)
	c("skipper_poll_source_errors_total", "Errors talking to the source (the poller reconnects with backoff).", m.SourceErrors)
	g("skipper_poll_in_flight", "Events claimed by this poller and not yet done, retried or dead.", m.InFlight)
	g("skipper_poll_lag_seconds", "Age of the oldest event this poller holds (MinIO: time since the delivered event happened).", m.Lag)
	g("skipper_poll_backlog", "Pending events seen in the source at the last claim (Redis: list length; SQL: rows the query returned).", m.Backlog)
	return m
}

// SetReady flips /readyz.
func (m *Metrics) SetReady(v bool) { m.ready.Store(v) }

// WriteText writes every metric in the Prometheus text format 0.0.4: the poller's own,
// labelled with the trigger, then a few process and Go runtime metrics under the names the
// official client uses, so existing dashboards keep working.
func (m *Metrics) WriteText(b *bytes.Buffer) {
	for _, s := range m.series {
		writeHeader(b, s.name, s.help, s.kind)
		b.WriteString(s.name)
		b.WriteString(m.labels)
		b.WriteByte(' ')
		b.WriteString(s.value())
		b.WriteByte('\n')
	}
	p := readProc()
	if p.cpuOK {
		writeSample(b, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", p.cpuSeconds)
	}
	if p.fdsOK {
		writeSample(b, "process_open_fds", "Number of open file descriptors.", "gauge", float64(p.openFDs))
	}
	if p.memOK {
		writeSample(b, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", float64(p.rss))
		writeSample(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", float64(p.vsize))
	}
	writeSample(b, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge",
		float64(processStart.UnixNano())/1e9)
	writeSample(b, "go_goroutines", "Number of goroutines that currently exist.", "gauge", float64(runtime.NumGoroutine()))
}

func writeHeader(b *bytes.Buffer, name, help, kind string) {
	b.WriteString("# HELP ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(escapeHelp(help))
	b.WriteString("\n# TYPE ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(kind)
	b.WriteByte('\n')
}

func writeSample(b *bytes.Buffer, name, help, kind string, v float64) {
	writeHeader(b, name, help, kind)
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

// formatFloat renders NaN and the infinities the way the text format spells them
// (strconv already writes NaN, +Inf and -Inf).
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// escapeLabel escapes a label value: backslash, double quote and line feed.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

type procStats struct {
	rss, vsize          uint64
	cpuSeconds          float64
	openFDs             int
	memOK, cpuOK, fdsOK bool
}

// readProc reads the process metrics from /proc/self; on systems without /proc the
// metrics are left out rather than reported as zero.
func readProc() procStats {
	var p procStats
	if raw, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(raw)); len(f) >= 2 {
			size, err1 := strconv.ParseUint(f[0], 10, 64)
			res, err2 := strconv.ParseUint(f[1], 10, 64)
			if err1 == nil && err2 == nil {
				page := uint64(os.Getpagesize())
				p.vsize, p.rss, p.memOK = size*page, res*page, true
			}
		}
	}
	if raw, err := os.ReadFile("/proc/self/stat"); err == nil {
		// The command name in field 2 may contain spaces; the fields after it may not.
		if i := bytes.LastIndexByte(raw, ')'); i >= 0 && i+2 < len(raw) {
			f := strings.Fields(string(raw[i+2:]))
			if len(f) > 12 {
				ut, err1 := strconv.ParseUint(f[11], 10, 64)
				st, err2 := strconv.ParseUint(f[12], 10, 64)
				if err1 == nil && err2 == nil {
					// USER_HZ is 100 on every Linux architecture Go supports.
					p.cpuSeconds, p.cpuOK = float64(ut+st)/100, true
				}
			}
		}
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			p.openFDs, p.fdsOK = len(names)-1, true // minus the descriptor reading the directory
		}
	}
	return p
}

// ServeHTTP answers a scrape.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	m.WriteText(&b)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

// Serve listens on addr and serves until ctx ends. It returns once the listener is bound,
// so readiness can be probed immediately.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s (set SKIPPER_METRICS_ADDR to a free port): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m)
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
