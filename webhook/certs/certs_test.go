package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// poll checks cond every 50 ms until it holds or the deadline passes.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

func newSelfSigned(t *testing.T, c client.Client, dir string, caValidity, certValidity time.Duration) *SelfSigned {
	return &SelfSigned{
		Client: c, Namespace: "skipper-system", SecretName: "skipper-webhook-ca", Dir: dir,
		Hosts: []string{"127.0.0.1", "skipper-webhook.skipper-system.svc"}, CAValidity: caValidity, CertValidity: certValidity,
	}
}

// serve runs a TLS server on the reloader and returns a function that handshakes with
// a client trusting the current bundle and returns the served certificate.
func serve(t *testing.T, r *Reloader, bundle func() []byte) func() (*x509.Certificate, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return func() (*x509.Certificate, error) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(bundle())
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
}

func TestServingCertRotatesAndReloads(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	dir := t.TempDir()
	s := newSelfSigned(t, c, dir, time.Hour, 3*time.Second)
	var bundles [][]byte
	s.OnBundle = func(_ context.Context, b []byte) error { bundles = append(bundles, b); return nil }
	ctx := context.Background()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.OnReload = func() error { _, err := r.Reload(); return err }
	handshake := serve(t, r, func() []byte { return bundles[len(bundles)-1] })
	first, err := handshake()
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	// A second Sync right away changes nothing.
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if cur, _ := handshake(); cur.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("a fresh certificate was rotated")
	}
	poll(t, 10*time.Second, "a rotated serving certificate served without restart", func() bool {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		cur, err := handshake()
		if err != nil {
			t.Fatalf("handshake during rotation: %v", err)
		}
		return cur.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if len(bundles) != 1 {
		t.Fatalf("the CA bundle changed %d times during a serving rotation", len(bundles)-1)
	}
}

func TestCARotationKeepsOldCertsTrusted(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	ctx := context.Background()
	// Two replicas share the CA through the Secret.
	a := newSelfSigned(t, c, t.TempDir(), 4*time.Second, time.Second)
	b := newSelfSigned(t, c, t.TempDir(), 4*time.Second, time.Second)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if string(a.lastBundle) != string(b.lastBundle) {
		t.Fatal("replicas made different CAs")
	}
	firstCA := a.lastBundle
	oldCert, _ := os.ReadFile(filepath.Join(b.Dir, CertFile))
	poll(t, 10*time.Second, "a CA rotation", func() bool {
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		return string(a.lastBundle) != string(firstCA)
	})
	pool := x509.NewCertPool()
	if n := countCerts(a.lastBundle); n != 2 {
		t.Fatalf("bundle after rotation holds %d CAs, want the new and the old", n)
	}
	pool.AppendCertsFromPEM(a.lastBundle)
	for name, pemBytes := range map[string][]byte{"old replica cert": oldCert, "new cert": mustRead(t, filepath.Join(a.Dir, CertFile))} {
		block, _ := pem.Decode(pemBytes)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: cert.NotBefore.Add(time.Minute + 100*time.Millisecond)}); err != nil {
			t.Fatalf("%s not trusted by the bundle: %v", name, err)
		}
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if string(b.lastBundle) != string(a.lastBundle) {
		t.Fatal("the other replica did not pick up the rotated CA")
	}
}

func TestReloaderKeepsPairOnMismatch(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	dir := t.TempDir()
	s := newSelfSigned(t, c, dir, time.Hour, time.Hour)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := r.GetCertificate(nil)
	// Half-way through a rewrite: a new key with the old certificate.
	ca, _ := NewAuthority("other", time.Now(), time.Hour)
	_, key, _ := ca.Issue([]string{"x"}, time.Now(), time.Hour)
	if err := os.WriteFile(filepath.Join(dir, KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(); err == nil {
		t.Fatal("a mismatched pair loaded")
	}
	if after, _ := r.GetCertificate(nil); after != before {
		t.Fatal("the served pair changed on a bad reload")
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countCerts(b []byte) int {
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return n
		}
		n++
	}
}
