package integration

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/admission"
	"github.com/getkipper/skipper/webhook/server"
	"github.com/getkipper/skipper/webhook/webhooktest"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// createLatency creates n function Deployments one after another in ns and returns the
// latency of each create call. Between creates (untimed) it waits until the cluster has
// digested the previous one: the Deployment controller observed it and, with the
// webhook, the reconciler wrote its Ingress. So every create is timed on a settled
// cluster rather than behind a backlog the benchmark itself made.
//
// With claim set (and no webhook), each timed create is preceded, inside the timing, by
// the create of a Lease like the host claim: the floor of any design in which etcd
// decides who holds a host, i.e. what the webhook cannot avoid.
func createLatency(b *testing.B, ns, prefix string, n int, companions, claim bool) []time.Duration {
	c := kube(b)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		d := fn(ns, fmt.Sprintf("%s-%d", prefix, i), nil)
		start := time.Now()
		if claim {
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: d.Name + ".claim"}}
			if err := c.Create(context.Background(), lease); err != nil {
				b.Fatalf("create claim: %v", err)
			}
		}
		if err := c.Create(context.Background(), d); err != nil {
			b.Fatalf("create: %v", err)
		}
		lat = append(lat, time.Since(start))
		testenv.Eventually(b, wait, "the create to settle", func() (bool, error) {
			var got appsv1.Deployment
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(d), &got); err != nil {
				return false, err
			}
			if got.Status.ObservedGeneration < got.Generation {
				return false, nil
			}
			if !companions {
				return true, nil
			}
			var ing networkingv1.Ingress
			err := c.Get(context.Background(), client.ObjectKeyFromObject(d), &ing)
			return err == nil, client.IgnoreNotFound(err)
		})
	}
	slices.Sort(lat)
	return lat
}

// updateLatency patches an annotation that is not Skipper's onto each of the n
// Deployments prefix-0..n-1 and returns the latency of each patch: with the webhook this
// is admission without a claim write (the host is already held).
func updateLatency(b *testing.B, ns, prefix string, n int) []time.Duration {
	c := kube(b)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i)}}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"example.com/revision":"%d"}}}`, i)
		start := time.Now()
		if err := c.Patch(context.Background(), d, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			b.Fatalf("patch %s: %v", d.Name, err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat
}

// admissionCalls is the sum and count of a latency histogram, e.g. the apiserver's
// apiserver_admission_webhook_admission_duration_seconds for Skipper's mutating
// webhook on CREATE.
type admissionCalls struct{ sum, count float64 }

func (a admissionCalls) minus(b admissionCalls) admissionCalls {
	return admissionCalls{a.sum - b.sum, a.count - b.count}
}

func webhookCalls(b *testing.B, cfg *rest.Config) admissionCalls {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatalf("apiserver metrics: %v", err)
	}
	var a admissionCalls
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_") ||
			!strings.Contains(line, `name="functions.getkipper.com"`) || !strings.Contains(line, `operation="CREATE"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			b.Fatalf("metrics line %q: %v", line, err)
		}
		switch {
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_sum{"):
			a.sum += v
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_count{"):
			a.count += v
		}
	}
	return a
}

// histogram reads the sum and count of one Prometheus histogram series.
func histogram(b *testing.B, o prometheus.Observer) admissionCalls {
	sum, count := histogramOf(o)
	return admissionCalls{sum, float64(count)}
}

func pct(lat []time.Duration, p int) time.Duration { return lat[len(lat)*p/100] }

func mean(lat []time.Duration) time.Duration {
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	return sum / time.Duration(len(lat))
}

// BenchmarkCreateLatency creates the same labelled Deployments through the apiserver
// without the webhook registered, then with it (admission, host claim and the
// reconciler writing companions in the background), side by side in one run; then
// updates them, without and with the webhook. Run it with
// -benchtime 1x: each phase makes its own fixed number of creates. n is bounded by the
// test control plane's Service range (a /24): every function gets a ClusterIP Service.
func BenchmarkCreateLatency(b *testing.B) {
	const n = 60
	cl := testenv.Cluster(b)
	ns := testenv.Namespace(b)
	createLatency(b, ns, "warm", 5, false, false) // connections, caches
	without := createLatency(b, ns, "plain", n, false, false)
	claimOnly := createLatency(b, ns, "claimed", n, false, true)
	updWithout := updateLatency(b, ns, "plain", n)
	webhooktest.StartServer(b, cl.Config, server.Options{Conf: testConf})
	createLatency(b, ns, "warmfn", 5, true, false)
	callsBefore := webhookCalls(b, cl.Config)
	reviewsBefore := histogram(b, server.ReviewSeconds().WithLabelValues(admission.PathMutateDeployments, "CREATE", "true"))
	claimsBefore := histogram(b, server.ClaimSeconds().WithLabelValues("ok"))
	with := createLatency(b, ns, "fn", n, true, false)
	calls := webhookCalls(b, cl.Config).minus(callsBefore)
	reviews := histogram(b, server.ReviewSeconds().WithLabelValues(admission.PathMutateDeployments, "CREATE", "true")).minus(reviewsBefore)
	claimed := histogram(b, server.ClaimSeconds().WithLabelValues("ok")).minus(claimsBefore)
	updWith := updateLatency(b, ns, "fn", n)
	report := func(name string, lat []time.Duration) {
		b.ReportMetric(float64(pct(lat, 50).Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(pct(lat, 90).Microseconds()), name+"-p90-µs")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), name+"-max-µs")
		b.ReportMetric(float64(mean(lat).Microseconds()), name+"-mean-µs")
	}
	report("without", without)
	report("claim-floor", claimOnly)
	report("with", with)
	b.ReportMetric(float64(pct(claimOnly, 50))/float64(pct(without, 50)), "floor-ratio-p50")
	b.ReportMetric(float64(pct(with, 50))/float64(pct(without, 50)), "ratio-p50")
	b.ReportMetric(float64(mean(with))/float64(mean(without)), "ratio-mean")
	// The apiserver's own view of the webhook call during the timed creates: what the
	// call costs inside a create, apart from the apiserver's work around it.
	if calls.count != n {
		b.Fatalf("the apiserver called the webhook %v times for %d creates", calls.count, n)
	}
	b.ReportMetric(calls.sum/calls.count*1e6, "webhook-call-mean-µs")
	// Skipper's side of those calls: the whole review, and the host claim within it.
	b.ReportMetric(reviews.sum/reviews.count*1e6, "review-mean-µs")
	b.ReportMetric(claimed.sum/claimed.count*1e6, "claim-mean-µs")
	report("update-without", updWithout)
	report("update-with", updWith)
	b.ReportMetric(float64(pct(updWith, 50))/float64(pct(updWithout, 50)), "update-ratio-p50")
}
