// Command dist builds the kubectl-skipper release archives (CGO_ENABLED=0) for each
// platform, writes their sha256 sums, and renders the krew manifest from its template.
//
//	go run ./plugin/internal/dist -version v0.1.0 -out dist -manifest krew/skipper.yaml
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// Platform is one release archive.
type Platform struct {
	OS, Arch string
	Archive  string // file name in the out directory
	URI      string
	SHA256   string
	Bin      string // binary name inside the archive
}

// CompletionScript is the file kubectl runs for `kubectl skipper <TAB>` (kubectl >= 1.26).
const CompletionScript = "kubectl_complete-skipper"

func main() {
	var (
		version   = flag.String("version", "dev", "release version; made semver (v0.0.0-<version>) when it is not")
		out       = flag.String("out", "dist", "output directory for archives and sha256sums.txt")
		platforms = flag.String("platforms", "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64,windows/arm64", "comma list of os/arch")
		tmpl      = flag.String("template", "krew/skipper.yaml.tmpl", "krew manifest template")
		manifest  = flag.String("manifest", "krew/skipper.yaml", "rendered krew manifest (its file name must be <plugin name>.yaml)")
		baseURL   = flag.String("base-url", "https://github.com/getkipper/skipper/releases/download/{{version}}/", "where the archives are published; {{version}} is replaced")
		ldflags   = flag.String("ldflags", "", "extra -ldflags for go build (the version is always set)")
		pkg       = flag.String("pkg", "github.com/getkipper/skipper/plugin/cmd/kubectl-skipper", "package of the plugin binary")
		script    = flag.String("completion", "plugin/"+CompletionScript, "kubectl completion script shipped in each archive")
	)
	flag.Parse()
	if err := run(semver(*version), *out, strings.Split(*platforms, ","), *tmpl, *manifest, *baseURL, *ldflags, *pkg, *script); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

var semverRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// semver keeps a release tag and turns anything else (a git hash, "dev") into a
// pre-release of v0.0.0, which krew accepts.
func semver(v string) string {
	if semverRE.MatchString(v) {
		return v
	}
	clean := regexp.MustCompile(`[^0-9A-Za-z.-]+`).ReplaceAllString(v, "-")
	clean = strings.Trim(clean, "-.")
	if clean == "" {
		clean = "dev"
	}
	return "v0.0.0-" + clean
}

func run(version, out string, platforms []string, tmplPath, manifest, baseURL, ldflags, pkg, script string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	completion, err := os.ReadFile(script)
	if err != nil {
		return fmt.Errorf("read completion script: %w", err)
	}
	base := strings.ReplaceAll(baseURL, "{{version}}", version)
	var built []Platform
	var sums strings.Builder
	for _, p := range platforms {
		osName, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok {
			return fmt.Errorf("platform %q: want os/arch such as linux/amd64", p)
		}
		pl := Platform{OS: osName, Arch: arch, Bin: "kubectl-skipper"}
		ext := ".tar.gz"
		if osName == "windows" {
			pl.Bin += ".exe"
			ext = ".zip"
		}
		pl.Archive = fmt.Sprintf("kubectl-skipper_%s_%s_%s%s", version, osName, arch, ext)
		pl.URI = base + pl.Archive
		bin, err := build(pkg, osName, arch, versionFlags(version, ldflags))
		if err != nil {
			return err
		}
		path := filepath.Join(out, pl.Archive)
		files := []file{{name: pl.Bin, data: bin, mode: 0o755}, {name: CompletionScript, data: completion, mode: 0o755}}
		if ext == ".zip" {
			err = writeZip(path, files)
		} else {
			err = writeTarGz(path, files)
		}
		if err != nil {
			return fmt.Errorf("archive %s: %w", pl.Archive, err)
		}
		if pl.SHA256, err = sha256File(path); err != nil {
			return err
		}
		fmt.Fprintf(&sums, "%s  %s\n", pl.SHA256, pl.Archive)
		fmt.Printf("%s  %s\n", pl.SHA256, path)
		built = append(built, pl)
	}
	if err := os.WriteFile(filepath.Join(out, "sha256sums.txt"), []byte(sums.String()), 0o644); err != nil {
		return fmt.Errorf("write sha256sums.txt: %w", err)
	}
	return render(tmplPath, manifest, version, built)
}

// versionFlags makes `kubectl skipper version` print the manifest's version, so what krew
// installed and what the binary says agree; -s -w drops debug info from release binaries.
func versionFlags(version, extra string) string {
	return strings.TrimSpace("-s -w -X github.com/getkipper/skipper/internal/version.Version=" + version + " " + extra)
}

func build(pkg, goos, arch, ldflags string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "skipper-dist-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "kubectl-skipper")
	args := []string{"build", "-trimpath", "-o", bin}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build for %s/%s: %w", goos, arch, err)
	}
	return os.ReadFile(bin)
}

type file struct {
	name string
	data []byte
	mode int64
}

// Archive entries get a fixed time so the same build gives the same archive.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func writeTarGz(path string, files []file) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, fl := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fl.name, Mode: fl.mode, Size: int64(len(fl.data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(fl.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}

func writeZip(path string, files []file) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(f)
	for _, fl := range files {
		h := &zip.FileHeader{Name: fl.name, Method: zip.Deflate, Modified: epoch}
		h.SetMode(os.FileMode(fl.mode))
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := w.Write(fl.data); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func render(tmplPath, manifest, version string, platforms []Platform) error {
	t, err := template.ParseFiles(tmplPath)
	if err != nil {
		return fmt.Errorf("krew template: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(manifest), 0o755); err != nil {
		return err
	}
	f, err := os.Create(manifest)
	if err != nil {
		return err
	}
	if err := t.Execute(f, struct {
		Version   string
		Platforms []Platform
	}{version, platforms}); err != nil {
		f.Close()
		return fmt.Errorf("render %s: %w", manifest, err)
	}
	return f.Close()
}
