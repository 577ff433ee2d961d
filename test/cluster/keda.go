package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KEDANamespace is where the KEDA operator keeps its cluster objects.
const KEDANamespace = "keda"

// StartKEDA runs the real KEDA operator (built by `make tools-keda`) against the cluster.
// It scales ScaledObjects between 0 and 1 by itself; 1 to N would need KEDA's metrics
// adapter behind the aggregation layer, which Skipper's tests do not rely on.
func (c *Cluster) StartKEDA(ctx context.Context, toolsDir string, detach bool) error {
	bin := filepath.Join(toolsDir, "keda-operator")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("keda-operator is missing from %s: run `make tools-keda`", toolsDir)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: KEDANamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", KEDANamespace, err)
	}
	certDir := filepath.Join(c.Dir, "keda-certs")
	if err := selfSignedServing(certDir); err != nil {
		return err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		// Its defaults bind every interface; a test machine exposes nothing.
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--metrics-service-bind-address=127.0.0.1:%d", ports[2]),
		"--cert-dir=" + certDir, "--ca-dir=" + certDir,
		"--enable-webhook-patching=false", "--enable-apiservice-patching=false",
		"--leader-elect=false", "--zap-log-level=info",
	}
	env := []string{"WATCH_NAMESPACE=", "KEDA_CLUSTER_OBJECT_NAMESPACE=" + KEDANamespace, "POD_NAMESPACE=" + KEDANamespace, "KUBECONFIG=" + c.Kubeconfig}
	if err := c.AddProcess("keda-operator", bin, args, env, detach); err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	if err := poll(ctx, 90*time.Second, "keda-operator "+url, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		return c.withLog(err, "keda-operator")
	}
	return nil
}

// selfSignedServing writes ca.crt, tls.crt and tls.key for a loopback server into dir.
func selfSignedServing(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("self-sign: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	errs := []error{
		os.WriteFile(filepath.Join(dir, "ca.crt"), certPEM, 0o600),
		os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600),
		writeKey(filepath.Join(dir, "tls.key"), key),
	}
	return errors.Join(errs...)
}
