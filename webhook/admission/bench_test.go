package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkHandler measures the mutating handler over HTTP (decode, expand, host
// lookup, claim, diff, encode) with in-memory claims and host index, so it shows the
// handler's own cost; BenchmarkCreateLatency in webhook/integration measures creates
// through the apiserver. Reported: p50 and p99 per request. CREATE-event is a postgres
// function (sidecar injection, no host).
func BenchmarkHandler(b *testing.B) {
	for _, name := range []string{"UPDATE", "CREATE", "CREATE-event"} {
		op := admissionv1.Operation(strings.TrimSuffix(name, "-event"))
		b.Run(name, func(b *testing.B) {
			h, fc, hosts := newHandler(b)
			for i := 0; i < 200; i++ {
				hosts[fmt.Sprintf("www%d.example.com", i)] = []Use{{Kind: "Ingress", Namespace: fmt.Sprintf("app-%d", i), Name: "site"}}
			}
			mux := http.NewServeMux()
			h.Register(mux)
			d := loadDeployment(b)
			if strings.HasSuffix(name, "-event") {
				d.Annotations = map[string]string{
					function.AnnotationTrigger: function.TriggerPostgres, function.AnnotationSource: "orders-db",
					function.AnnotationQuery:    "SELECT * FROM orders WHERE status = 'pending'",
					function.AnnotationMarkDone: "UPDATE orders SET status = 'done' WHERE id = {{id}}",
				}
			}
			fc.held[testHost] = claims.Holder{Namespace: d.Namespace, Name: d.Name}
			// Every request body is encoded before the clock starts and every response
			// checked after it stops, so the harness's own garbage does not put
			// collections inside the measured requests: the handler's own garbage does.
			bodies := make([][]byte, b.N)
			for i := range bodies {
				if op == admissionv1.Create {
					// Each CREATE claims a host of its own, like a stream of new functions.
					d.Name = fmt.Sprintf("fn-%d", i)
				}
				var old = d
				if op == admissionv1.Create {
					old = nil
				}
				bodies[i], _ = json.Marshal(admissionv1.AdmissionReview{
					TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: request(b, op, d, old),
				})
			}
			recorders := make([]*httptest.ResponseRecorder, b.N)
			lat := make([]time.Duration, b.N)
			runtime.GC()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := httptest.NewRequest(http.MethodPost, PathMutateDeployments, bytes.NewReader(bodies[i]))
				w := httptest.NewRecorder()
				start := time.Now()
				mux.ServeHTTP(w, r)
				lat[i] = time.Since(start)
				recorders[i] = w
			}
			b.StopTimer()
			for _, w := range recorders {
				var out admissionv1.AdmissionReview
				if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil || !out.Response.Allowed {
					b.Fatalf("bad response: %v %s", err, w.Body.String())
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
