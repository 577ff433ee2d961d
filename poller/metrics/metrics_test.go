package metrics

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape parses the exposition with Prometheus' own text parser.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	var b bytes.Buffer
	m.WriteText(&b)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b.String())
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.Metric) != 1 {
		t.Fatalf("metric %s missing or not a single series", name)
	}
	mm := f.Metric[0]
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return mm.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return mm.GetGauge().GetValue()
	}
	t.Fatalf("metric %s has type %v", name, f.GetType())
	return 0
}

func TestExpositionParsesAndMoves(t *testing.T) {
	m := New(`re"dis\` + "\n")
	own := map[string]dto.MetricType{
		"skipper_poll_claimed_total": dto.MetricType_COUNTER, "skipper_poll_delivered_total": dto.MetricType_COUNTER,
		"skipper_poll_retried_total": dto.MetricType_COUNTER, "skipper_poll_dead_total": dto.MetricType_COUNTER,
		"skipper_poll_source_errors_total": dto.MetricType_COUNTER, "skipper_poll_in_flight": dto.MetricType_GAUGE,
		"skipper_poll_lag_seconds": dto.MetricType_GAUGE, "skipper_poll_backlog": dto.MetricType_GAUGE,
	}
	fams := scrape(t, m)
	for name, typ := range own {
		f := fams[name]
		if f == nil {
			t.Fatalf("%s not exported", name)
		}
		if f.GetType() != typ || f.GetHelp() == "" {
			t.Errorf("%s: type %v help %q", name, f.GetType(), f.GetHelp())
		}
		if l := f.Metric[0].GetLabel(); len(l) != 1 || l[0].GetName() != "trigger" || l[0].GetValue() != `re"dis\`+"\n" {
			t.Errorf("%s: labels %v, want the trigger escaped and restored", name, l)
		}
		if v := value(t, fams, name); v != 0 {
			t.Errorf("%s starts at %v", name, v)
		}
	}

	m.Claimed.Inc()
	m.Claimed.Inc()
	m.Delivered.Add(5)
	m.Retried.Inc()
	m.Dead.Inc()
	m.SourceErrors.Inc()
	m.InFlight.Set(32)
	m.Lag.Set(0.25)
	m.Backlog.Set(1e9)
	fams = scrape(t, m)
	want := map[string]float64{
		"skipper_poll_claimed_total": 2, "skipper_poll_delivered_total": 5, "skipper_poll_retried_total": 1,
		"skipper_poll_dead_total": 1, "skipper_poll_source_errors_total": 1, "skipper_poll_in_flight": 32,
		"skipper_poll_lag_seconds": 0.25, "skipper_poll_backlog": 1e9,
	}
	for name, v := range want {
		if got := value(t, fams, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	m.Lag.Set(math.NaN())
	if got := value(t, scrape(t, m), "skipper_poll_lag_seconds"); !math.IsNaN(got) {
		t.Errorf("NaN came back as %v", got)
	}

	if rss := value(t, fams, "process_resident_memory_bytes"); rss < 1<<20 {
		t.Errorf("process_resident_memory_bytes = %v, want at least 1 MiB", rss)
	}
	if g := value(t, fams, "go_goroutines"); g < 1 {
		t.Errorf("go_goroutines = %v", g)
	}
	if fds := value(t, fams, "process_open_fds"); fds < 3 {
		t.Errorf("process_open_fds = %v", fds)
	}
	if st := value(t, fams, "process_start_time_seconds"); math.Abs(st-float64(time.Now().Unix())) > 3600 {
		t.Errorf("process_start_time_seconds = %v, not near now", st)
	}
	value(t, fams, "process_cpu_seconds_total")
	value(t, fams, "process_virtual_memory_bytes")
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New("postgres")
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string, string) {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, _, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready: %d", code)
	}
	m.SetReady(true)
	if code, _, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready: %d", code)
	}
	if code, _, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	m.Delivered.Inc()
	code, ctype, body := get("/metrics")
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %q", code, ctype)
	}
	if !strings.Contains(body, "skipper_poll_delivered_total{trigger=\"postgres\"} 1\n") {
		t.Errorf("/metrics lacks the delivered count:\n%s", body)
	}
	fmtType := expfmt.ResponseFormat(http.Header{"Content-Type": {ctype}})
	if fmtType.FormatType() != expfmt.TypeTextPlain {
		t.Errorf("Content-Type %q is not recognised as the text format", ctype)
	}
}
