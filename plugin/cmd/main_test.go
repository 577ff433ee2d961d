package cmd_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/getkipper/skipper/plugin/cmd"
	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/webhooktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPlugin runs every command against the local control plane with the real webhook
// (in-process, one per test binary) and compares transcripts with testdata/TestPlugin/.
func TestPlugin(t *testing.T) {
	webhooktest.Start(t, testenv.Cluster(t).Config, function.DefaultConfig())
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"ImageFunction", testImageFunction},
		{"InlineFunction", testInlineFunction},
		{"Status", testStatus},
		{"DryRun", testDryRun},
		{"ProjectEnvironment", testProjectEnvironment},
		{"Errors", testErrors},
		{"VersionAndCompletion", testVersionAndCompletion},
		{"Logs", testLogs},
		{"RunLocalPostgres", testRunLocalPostgres},
		{"RunLocalRedis", testRunLocalRedis},
		{"RunLocalCommand", testRunLocalCommand},
		{"CreateEventTriggers", testCreateEventTriggers},
		{"SecurityHeaders", testSecurityHeaders},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

// session runs kubectl-skipper commands against the local control plane in one namespace
// and records a transcript that is compared with testdata/<test name>.golden.
type session struct {
	t          *testing.T
	ns         string
	kubeconfig string
	env        map[string]string
	transcript bytes.Buffer
	replacer   []string // old, new pairs applied to the transcript
}

func newSession(t *testing.T) *session {
	t.Helper()
	s := &session{
		t:          t,
		ns:         testenv.Namespace(t),
		kubeconfig: testenv.Cluster(t).Kubeconfig,
		// An empty config home keeps the developer's own skipper config out of the tests.
		env: map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "HOME": t.TempDir()},
	}
	s.replace(s.ns, "NAMESPACE")
	return s
}

func (s *session) replace(old, new string) { s.replacer = append(s.replacer, old, new) }

// run executes one command with the session's kubeconfig and namespace and returns stdout,
// stderr and the exit code; the transcript records all three.
func (s *session) run(stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	streams, in, out, errOut := genericiooptions.NewTestIOStreams()
	in.WriteString(stdin)
	root := cmd.NewRoot(streams)
	root.Getenv = func(k string) string { return s.env[k] }
	var extra []string
	if !hasFlag(args, "--kubeconfig") && !hasFlag(args, "--server") {
		extra = append(extra, "--kubeconfig", s.kubeconfig)
	}
	if !hasFlag(args, "-n") && !hasFlag(args, "-A") && !hasFlag(args, "--project") {
		extra = append(extra, "-n", s.ns)
	}
	full := append(append([]string{}, args...), extra...)
	if len(args) > 0 && args[0] == "__complete" {
		// Completion is for the last word, so the connection flags go first.
		full = append(append([]string{args[0]}, extra...), args[1:]...)
	}
	code := root.Run(full)
	fmt.Fprintf(&s.transcript, "$ kubectl skipper %s\n", strings.Join(args, " "))
	if out.Len() > 0 {
		s.transcript.WriteString(out.String())
		if !strings.HasSuffix(out.String(), "\n") {
			s.transcript.WriteString("\n")
		}
	}
	if errOut.Len() > 0 {
		s.transcript.WriteString("[stderr]\n" + errOut.String())
	}
	fmt.Fprintf(&s.transcript, "[exit %d]\n\n", code)
	return out.String(), errOut.String(), code
}

// ok runs a command that must succeed.
func (s *session) ok(stdin string, args ...string) string {
	s.t.Helper()
	out, errOut, code := s.run(stdin, args...)
	if code != 0 {
		s.t.Fatalf("kubectl skipper %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

var (
	// Ages as printed by kubectl's HumanDuration: 5s, 3m2s, 10m, 2h, 3d.
	ageRE = regexp.MustCompile(`(^|\s)([0-9]+[smhdy]([0-9]+[smh])?)(\s|$)`)
	// Pod names of a Deployment: NAME-<pod-template-hash>-<suffix>.
	podRE    = regexp.MustCompile(`([a-z0-9-]+)-[a-z0-9]{8,10}-[a-z0-9]{5}\b`)
	spacesRE = regexp.MustCompile(` {2,}`)
	// ReplicaSets of a Deployment: NAME-<pod-template-hash>, as events name them.
	rsRE   = regexp.MustCompile(`(replicaset/|replica set )([a-z0-9-]+)-[a-z0-9]{8,10}\b`)
	metaRE = regexp.MustCompile(`(?m)^(\s*)(uid|resourceVersion|creationTimestamp|generation): .*$`)
	// Which companion of a function the webhook names as holding a host depends on which
	// the reconciler wrote first.
	holderRE = regexp.MustCompile(`(used by|remove that host from) (Ingress|HTTPScaledObject) `)
)

// normalise removes what changes from run to run: namespace names, ages, pod suffixes,
// server-set metadata. Column padding depends on the widths of those, so runs of spaces are
// collapsed too.
func (s *session) normalise(text string) string {
	text = strings.NewReplacer(s.replacer...).Replace(text)
	text = metaRE.ReplaceAllString(text, "${1}${2}: X")
	text = holderRE.ReplaceAllString(text, "${1} COMPANION ")
	text = podRE.ReplaceAllString(text, "${1}-HASH-SUFFIX")
	text = rsRE.ReplaceAllString(text, "${1}${2}-HASH")
	var lines []string
	var events []string // rows of a describe Events table, sorted: same-second order varies
	flush := func() {
		if len(events) == 0 {
			// Every row was noise (below): describe would have printed <none>.
			lines[len(lines)-1] = "  <none>"
		}
		sort.Strings(events)
		lines = append(lines, events...)
		events = nil
	}
	inEvents := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "  TYPE") && strings.Contains(l, "REASON") {
			inEvents = true
			lines = append(lines, spacesRE.ReplaceAllString(l, "  "))
			continue
		}
		if inEvents && strings.HasPrefix(l, "  ") && strings.Contains(l, "ClusterIPNotAllocated") {
			// The apiserver's IP repair loop reports a Service it has not seen allocated yet
			// when it happens to run; it says nothing about the function.
			continue
		}
		if inEvents && strings.HasPrefix(l, "  ") {
			events = append(events, "  "+spacesRE.ReplaceAllString(ageRE.ReplaceAllString(strings.TrimSpace(l), "${1}AGE${4}"), "  "))
			continue
		}
		if inEvents {
			flush()
			inEvents = false
		}
		// Only table rows (tabwriter pads with two or more spaces) carry ages.
		if spacesRE.MatchString(l) && !strings.Contains(l, "timeout") && !strings.HasPrefix(l, "$ ") {
			for ageRE.MatchString(l) {
				l = ageRE.ReplaceAllString(l, "${1}AGE${4}")
			}
			indent := len(l) - len(strings.TrimLeft(l, " "))
			l = l[:indent] + spacesRE.ReplaceAllString(l[indent:], "  ")
		}
		lines = append(lines, l)
	}
	if inEvents {
		flush()
	}
	return strings.Join(lines, "\n")
}

// check compares the transcript with the golden file (or rewrites it with -update).
func (s *session) check() {
	s.t.Helper()
	got := s.normalise(s.transcript.String())
	path := filepath.Join("testdata", s.t.Name()+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			s.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatalf("read golden file (run go test ./plugin/cmd -update to create it): %v", err)
	}
	if got != string(want) {
		s.t.Errorf("transcript differs from %s (go test ./plugin/cmd -run '%s' -update to accept):\n%s", path, s.t.Name(), diff(string(want), got))
	}
}

// diff shows the first differing lines.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d\n  want: %q\n  got:  %q\n", i+1, w, g)
			if shown++; shown == 8 {
				break
			}
		}
	}
	return b.String()
}
