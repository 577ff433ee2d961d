package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/getkipper/skipper/webhook/admission"
	"github.com/getkipper/skipper/webhook/claims"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Admission metrics, served with the reconciler's on the manager's metrics endpoint. The
// apiserver measures the whole call (apiserver_admission_webhook_admission_duration_seconds);
// these split it into Skipper's own work and the host claim, which is a write through the
// apiserver.
var (
	reviewSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skipper_webhook_review_duration_seconds",
		Help:    "Time to answer an admission review, from request to written response.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"path", "operation", "allowed"})
	claimSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skipper_webhook_claim_duration_seconds",
		Help:    "Time to claim a function's host (a cache read, and a Lease write for a new host).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"result"})
	registerMetrics sync.Once
)

// ReviewSeconds and ClaimSeconds are the histograms (benchmarks read them in process).
func ReviewSeconds() *prometheus.HistogramVec { return reviewSeconds }
func ClaimSeconds() *prometheus.HistogramVec  { return claimSeconds }

func observeAdmission(h *admission.Handler) {
	registerMetrics.Do(func() { metrics.Registry.MustRegister(reviewSeconds, claimSeconds) })
	h.Observe = func(path, op string, allowed bool, took time.Duration) {
		reviewSeconds.WithLabelValues(path, op, strconv.FormatBool(allowed)).Observe(took.Seconds())
	}
	h.ObserveClaim = func(took time.Duration, err error) {
		result := "ok"
		if _, conflict := claims.IsConflict(err); conflict {
			result = "conflict"
		} else if err != nil {
			result = "error"
		}
		claimSeconds.WithLabelValues(result).Observe(took.Seconds())
	}
}
