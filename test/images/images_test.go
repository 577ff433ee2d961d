// Package images checks the Dockerfiles of skipper-webhook and skipper-poll for what can be
// checked without a container engine: the Go version of go.mod, a static stripped build of
// a main package that exists (as `make build` and the poller's RSS benchmark build it), a
// final image holding only the binary, a numeric non-root user that matches the install
// manifests, the ports the manifests and the webhook use, and a build context that leaves
// the tool binaries and caches out.
package images

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkipper/skipper/internal/dockerfile"
	"github.com/getkipper/skipper/webhook/function"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

const root = "../.."

type image struct {
	binary, pkg, repository string
	ports                   []int
	tags                    string // build tags, e.g. timetzdata where scratch's missing zone files matter
}

var images = map[string]image{
	"webhook": {binary: "skipper-webhook", pkg: "./webhook/cmd/skipper-webhook", repository: webhookImage(), ports: webhookPorts()},
	"poller":  {binary: "skipper-poll", pkg: "./poller/cmd/skipper-poll", repository: function.PollerImageRepository, ports: []int{function.PollerMetricsPort}, tags: "timetzdata"},
}

func TestServerDockerfiles(t *testing.T) {
	goVersion := goModVersion(t)
	uid := manifestUser(t)
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(root, name, "Dockerfile")
			ins, err := dockerfile.Parse(file)
			if err != nil {
				t.Fatal(err)
			}
			header, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(header), "-t "+img.repository+":") {
				t.Errorf("the header's build example does not tag %s, the image the install uses", img.repository)
			}
			var froms, exposed []string
			var build, user string
			var entry []string
			copied := map[string]string{}
			for _, in := range ins {
				switch in.Op {
				case "FROM":
					froms = append(froms, in.Args)
				case "RUN":
					if strings.Contains(in.Args, "go build") {
						build = in.Args
					}
				case "COPY":
					f := strings.Fields(in.Args)
					if len(f) == 3 && f[0] == "--from=build" {
						copied[f[2]] = f[1]
					}
				case "USER":
					user = in.Args
				case "EXPOSE":
					exposed = append(exposed, strings.Fields(in.Args)...)
				case "ENTRYPOINT":
					if err := json.Unmarshal([]byte(in.Args), &entry); err != nil {
						t.Errorf("line %d: ENTRYPOINT %s: use the JSON exec form so the binary is PID 1 and gets SIGTERM", in.Line, in.Args)
					}
				case "ADD":
					t.Errorf("line %d: use COPY, not ADD", in.Line)
				}
			}
			if want := []string{"golang:" + goVersion + " AS build", "scratch"}; strings.Join(froms, "|") != strings.Join(want, "|") {
				t.Errorf("FROM %q, want %q: build with go.mod's Go, ship only the binary", froms, want)
			}
			for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X github.com/getkipper/skipper/internal/version.Version=${VERSION}"`, "-o /out/" + img.binary, img.pkg} {
				if !strings.Contains(build, flag) {
					t.Errorf("go build %q lacks %s", build, flag)
				}
			}
			if got := regexp.MustCompile(`-tags (\S+)`).FindStringSubmatch(build); (got == nil && img.tags != "") || (got != nil && got[1] != img.tags) {
				t.Errorf("go build %q: want build tags %q", build, img.tags)
			}
			if !isMainPackage(t, filepath.Join(root, img.pkg)) {
				t.Errorf("%s is not a main package", img.pkg)
			}
			if len(entry) != 1 || copied[entry[0]] != "/out/"+img.binary {
				t.Errorf("ENTRYPOINT %q does not run the built /out/%s (copied: %v)", entry, img.binary, copied)
			}
			if copied["/etc/ssl/certs/ca-certificates.crt"] == "" {
				t.Errorf("no CA bundle in the image: TLS to sources and endpoints would fail")
			}
			if u, _, _ := strings.Cut(user, ":"); u != strconv.Itoa(uid) {
				t.Errorf("USER %q, want %d: numeric, non-root, the runAsUser of manifests/base/deployment.yaml", user, uid)
			}
			for _, p := range img.ports {
				if !slices.Contains(exposed, strconv.Itoa(p)) {
					t.Errorf("EXPOSE %v lacks %d", exposed, p)
				}
			}
		})
	}
}

// The build context is the repository root: the tools (gigabytes), caches and node
// modules must stay out of it.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf("reading .dockerignore: %v", err)
	}
	lines := strings.Fields(string(data))
	for _, want := range []string{"bin", ".dev", ".git", "dist", "**/node_modules"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

// The Makefile builds the server binaries the way the images do.
func TestMakeBuildMatchesImages(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^SERVER_BUILD\s*:=\s*(.*)$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("Makefile defines no SERVER_BUILD")
	}
	for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w $(LDFLAGS)"`} {
		if !strings.Contains(m[1], flag) {
			t.Errorf("SERVER_BUILD %q lacks %s", m[1], flag)
		}
	}
	for _, img := range images {
		line := "$(SERVER_BUILD) -o $(BIN)/" + img.binary + " " + img.pkg
		if img.tags != "" {
			line = "$(SERVER_BUILD) -tags " + img.tags + " -o $(BIN)/" + img.binary + " " + img.pkg
		}
		if !strings.Contains(string(data), line) {
			t.Errorf("make build does not build %s as its image does: want %q", img.binary, line)
		}
	}
}

func goModVersion(t *testing.T) string {
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// install is the webhook Deployment of manifests/base, read once.
var install = readInstall()

func readInstall() *appsv1.Deployment {
	data, err := os.ReadFile(filepath.Join(root, "manifests/base/deployment.yaml"))
	if err != nil {
		panic(err)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(data, &d); err != nil {
		panic(err)
	}
	return &d
}

func manifestUser(t *testing.T) int {
	sc := install.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil {
		t.Fatal("manifests/base/deployment.yaml sets no runAsUser")
	}
	return int(*sc.RunAsUser)
}

func webhookImage() string {
	repo, _, _ := strings.Cut(install.Spec.Template.Spec.Containers[0].Image, ":")
	return repo
}

func webhookPorts() []int {
	var ports []int
	for _, p := range install.Spec.Template.Spec.Containers[0].Ports {
		ports = append(ports, int(p.ContainerPort))
	}
	return ports
}

func isMainPackage(t *testing.T, dir string) bool {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^package main$`).Match(data) {
			return true
		}
	}
	return false
}
