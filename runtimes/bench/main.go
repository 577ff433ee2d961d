// Command bench measures the inline-function runtimes side by side with the bare servers they
// are built on, in one run: time from process start to the first 200 on the readiness path,
// and requests per second for a trivial handler. Runs are interleaved (runtime, bare,
// runtime, bare, ...) so a busy machine slows both sides alike, and medians are reported.
//
//	go run ./runtimes/bench -root .
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/getkipper/skipper/runtimes/launch"
)

type pair struct {
	name    string
	runtime launch.Kind
	bare    launch.Kind
}

var pairs = []pair{
	{name: "Node.js 20 / Express", runtime: launch.Node, bare: launch.BareExpress},
	{name: "Python / Flask + gunicorn", runtime: launch.Python, bare: launch.BareFlask},
}

type options struct {
	root          string
	startRounds   int
	loadRounds    int
	duration      time.Duration
	warmup        time.Duration
	concurrency   int
	workers       int
	readyDeadline time.Duration
	only          string
}

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "repository root")
	flag.IntVar(&o.startRounds, "start-rounds", 10, "start-up measurements per server")
	flag.IntVar(&o.loadRounds, "load-rounds", 3, "throughput measurements per server")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of one throughput measurement")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "load before each throughput measurement, not counted")
	flag.IntVar(&o.concurrency, "concurrency", 8, "concurrent keep-alive clients")
	flag.IntVar(&o.workers, "workers", 2, "gunicorn workers, the same for the runtime and bare Flask")
	flag.DurationVar(&o.readyDeadline, "ready-deadline", time.Minute, "give up on a server that is not ready by then")
	flag.StringVar(&o.only, "only", "", "measure one stack only: node or python")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return fmt.Errorf("-root %q: %w", o.root, err)
	}
	o.root = root
	for _, p := range pairs {
		for _, k := range []launch.Kind{p.runtime, p.bare} {
			if err := launch.Check(root, k); err != nil {
				return err
			}
		}
	}
	fmt.Printf("## Runtime benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("Machine: %d CPUs (GOMAXPROCS %d), load average at start %s; %s; gunicorn %d sync workers on both sides; %d keep-alive clients, %d x %s per server after %s warm-up; start-up over %d starts.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), loadAverage(), versions(root), o.workers, o.concurrency, o.loadRounds, o.duration, o.warmup, o.startRounds)

	fmt.Println("| Stack | Start to ready, runtime | bare | ratio (target <= 1.2) | Requests/s, runtime | bare | ratio (target >= 0.9) |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, p := range pairs {
		if o.only != "" && string(p.runtime) != o.only {
			continue
		}
		rs, bs, err := startups(o, p)
		if err != nil {
			return err
		}
		rq, bq, err := throughputs(o, p)
		if err != nil {
			return err
		}
		sRatio := float64(median(rs)) / float64(median(bs))
		qRatio := medianF(rq) / medianF(bq)
		fmt.Printf("| %s | %s | %s | %.2f %s | %.0f | %.0f | %.2f %s |\n", p.name,
			ms(median(rs)), ms(median(bs)), sRatio, verdict(sRatio <= 1.2),
			medianF(rq), medianF(bq), qRatio, verdict(qRatio >= 0.9))
		fmt.Fprintf(os.Stderr, "%s raw: start runtime %v bare %v; req/s runtime %.0f bare %.0f\n", p.name, rs, bs, rq, bq)
	}
	fmt.Println()
	fmt.Println("Start to ready: from just before exec to the first 200 from the readiness path (/.skipper/ready for the runtimes, / for the bare servers), polled every 2 ms; median. Requests/s: GET / answered 200; median.")
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(**missed**)"
}

func (o options) launchOptions(kind launch.Kind) launch.Options {
	return launch.Options{
		Root:    o.root,
		Kind:    kind,
		CodeDir: filepath.Join(o.root, "runtimes/testdata/fixtures/trivial"),
		Workers: o.workers,
	}
}

func readyPath(kind launch.Kind) string {
	if kind == launch.Node || kind == launch.Python {
		return "/.skipper/ready"
	}
	return "/"
}

// startups measures start to ready, alternating runtime and bare starts.
func startups(o options, p pair) (rt, bare []time.Duration, err error) {
	for i := 0; i < o.startRounds; i++ {
		for _, k := range []launch.Kind{p.runtime, p.bare} {
			d, err := startOnce(o, k)
			if err != nil {
				return nil, nil, err
			}
			if k == p.runtime {
				rt = append(rt, d)
			} else {
				bare = append(bare, d)
			}
		}
	}
	return rt, bare, nil
}

func startOnce(o options, kind launch.Kind) (time.Duration, error) {
	proc, err := launch.Start(o.launchOptions(kind))
	if err != nil {
		return 0, err
	}
	defer proc.Kill()
	if err := proc.WaitStatus(readyPath(kind), http.StatusOK, o.readyDeadline); err != nil {
		return 0, fmt.Errorf("%s: %w", kind, err)
	}
	return time.Since(proc.Started), nil
}

// throughputs measures requests/s, alternating runtime and bare, one server at a time.
func throughputs(o options, p pair) (rt, bare []float64, err error) {
	for i := 0; i < o.loadRounds; i++ {
		for _, k := range []launch.Kind{p.runtime, p.bare} {
			q, err := loadOnce(o, k)
			if err != nil {
				return nil, nil, err
			}
			if k == p.runtime {
				rt = append(rt, q)
			} else {
				bare = append(bare, q)
			}
		}
	}
	return rt, bare, nil
}

func loadOnce(o options, kind launch.Kind) (float64, error) {
	proc, err := launch.StartReady(o.launchOptions(kind), readyPath(kind), o.readyDeadline)
	if err != nil {
		return 0, err
	}
	defer proc.Kill()
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        o.concurrency,
			MaxIdleConnsPerHost: o.concurrency,
			IdleConnTimeout:     time.Minute,
		},
	}
	defer client.CloseIdleConnections()
	if _, _, err := load(client, proc.URL+"/", o.concurrency, o.warmup); err != nil {
		return 0, fmt.Errorf("%s warm-up: %w\n%s", kind, err, proc.Output())
	}
	// Requests cut off at the end of the warm-up leave dialled, unused connections in the
	// pool; a gunicorn sync worker that accepted one would wait on it instead of serving.
	client.CloseIdleConnections()
	n, elapsed, err := load(client, proc.URL+"/", o.concurrency, o.duration)
	if err != nil {
		return 0, fmt.Errorf("%s: %w\n%s", kind, err, proc.Output())
	}
	return float64(n) / elapsed.Seconds(), nil
}

// load runs concurrency clients in a loop for d and counts 200 answers; any other answer
// or error stops the measurement, since a server that fails is not fast.
func load(client *http.Client, url string, concurrency int, d time.Duration) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var ok atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err })
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					once.Do(func() { firstErr = fmt.Errorf("GET %s answered %d", url, resp.StatusCode) })
					return
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil && !errors.Is(firstErr, context.DeadlineExceeded) {
		return 0, 0, firstErr
	}
	return ok.Load(), elapsed, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func versions(root string) string {
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("node %s, express %s, %s, flask %s, gunicorn %s",
		out("node", "--version"),
		out("node", "-p", "require(process.argv[1]).version", filepath.Join(root, "runtimes/node/node_modules/express/package.json")),
		out(launch.PythonBin(), "--version"),
		out(launch.PythonBin(), "-c", "import importlib.metadata as m; print(m.version('flask'))"),
		out(launch.PythonBin(), "-c", "import gunicorn; print(gunicorn.__version__)"))
}
