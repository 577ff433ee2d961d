package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys of the CA Secret.
const (
	SecretCACert = "ca.crt"
	SecretCAKey  = "ca.key"
	// SecretBundle is what clients trust: the current CA and, after a rotation, the
	// previous one until it expires, so certificates of both stay valid meanwhile.
	SecretBundle = "bundle.crt"
)

// Defaults of SelfSigned.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// SelfSigned keeps the webhook's CA in a Secret (one CA for every replica; etcd decides
// which replica's first CA wins) and this replica's serving certificate in Dir.
type SelfSigned struct {
	// Client must read live (no cache): replicas race on the Secret.
	Client                client.Client
	Namespace, SecretName string
	Dir                   string
	// Hosts are the serving certificate's DNS names and IPs.
	Hosts                    []string
	CAValidity, CertValidity time.Duration
	Now                      func() time.Time
	// OnBundle is called with the CA bundle whenever it changes (caBundle injection).
	OnBundle func(ctx context.Context, bundle []byte) error
	// OnReload is called after the serving certificate was replaced on disk.
	OnReload func() error

	lastBundle []byte
}

func (s *SelfSigned) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *SelfSigned) validity() (ca, cert time.Duration) {
	ca, cert = s.CAValidity, s.CertValidity
	if ca == 0 {
		ca = DefaultCAValidity
	}
	if cert == 0 {
		cert = DefaultCertValidity
	}
	return ca, cert
}

// Sync makes sure the CA and the serving certificate exist and are far enough from
// expiry, rotating them otherwise, and publishes the bundle. Call it periodically.
func (s *SelfSigned) Sync(ctx context.Context) error {
	ca, bundle, err := s.authority(ctx)
	if err != nil {
		return err
	}
	// Publish the bundle first: after a CA rotation it trusts both CAs, so the old
	// serving certificates stay valid until the new ones are in place.
	if !bytes.Equal(bundle, s.lastBundle) && s.OnBundle != nil {
		if err := s.OnBundle(ctx, bundle); err != nil {
			return fmt.Errorf("publish CA bundle: %w", err)
		}
	}
	s.lastBundle = bundle
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("cert dir: %w", err)
	}
	if err := writeIfChanged(filepath.Join(s.Dir, CAFile), bundle); err != nil {
		return err
	}
	if !s.needsCert(ca) {
		return nil
	}
	_, certValidity := s.validity()
	certPEM, keyPEM, err := ca.Issue(s.Hosts, s.now(), certValidity)
	if err != nil {
		return err
	}
	// Key first, then certificate: a reader between the two sees a mismatched pair and
	// keeps the previous one (Reloader.Reload).
	if err := writeAtomic(filepath.Join(s.Dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(s.Dir, CertFile), certPEM, 0o644); err != nil {
		return err
	}
	if s.OnReload != nil {
		return s.OnReload()
	}
	return nil
}

// Run calls Sync every interval until ctx ends; errors go to onErr and are retried.
func (s *SelfSigned) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sync(ctx); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// needsCert says whether the serving certificate must be (re)issued: missing, from
// another CA, for other hosts, or in the last third of its life.
func (s *SelfSigned) needsCert(ca *Authority) bool {
	raw, err := os.ReadFile(filepath.Join(s.Dir, CertFile))
	if err != nil {
		return true
	}
	if _, err := os.Stat(filepath.Join(s.Dir, KeyFile)); err != nil {
		return true
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return true
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil {
		return true
	}
	var names []string
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	want := slices.Clone(s.Hosts)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return true
	}
	_, certValidity := s.validity()
	return s.now().After(cert.NotAfter.Add(-certValidity / 3))
}

// authority returns the shared CA, creating or rotating it in the Secret.
func (s *SelfSigned) authority(ctx context.Context) (*Authority, []byte, error) {
	caValidity, certValidity := s.validity()
	for attempt := 0; attempt < 5; attempt++ {
		var sec corev1.Secret
		err := s.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.SecretName}, &sec)
		if apierrors.IsNotFound(err) {
			ca, err := NewAuthority("skipper-webhook", s.now(), caValidity)
			if err != nil {
				return nil, nil, err
			}
			sec = corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: s.SecretName, Namespace: s.Namespace,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "skipper"}},
				Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{SecretCACert: ca.CertPEM, SecretCAKey: ca.KeyPEM, SecretBundle: ca.CertPEM},
			}
			if err := s.Client.Create(ctx, &sec); err != nil {
				if apierrors.IsAlreadyExists(err) {
					continue // another replica won: use its CA
				}
				return nil, nil, fmt.Errorf("create CA Secret %s/%s: %w", s.Namespace, s.SecretName, err)
			}
			return ca, ca.CertPEM, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read CA Secret %s/%s: %w", s.Namespace, s.SecretName, err)
		}
		ca, err := ParseAuthority(sec.Data[SecretCACert], sec.Data[SecretCAKey])
		if err != nil {
			return nil, nil, fmt.Errorf("CA Secret %s/%s: %w (delete it to start over)", s.Namespace, s.SecretName, err)
		}
		// Rotate while the CA can still outlive one serving certificate's rotation
		// window, so no replica is ever left with a certificate its CA no longer covers.
		if s.now().Before(ca.Cert.NotAfter.Add(-certValidity)) && s.now().Before(ca.Cert.NotAfter.Add(-caValidity/3)) {
			return ca, bundleOf(sec.Data[SecretBundle], ca.CertPEM), nil
		}
		next, err := NewAuthority("skipper-webhook", s.now(), caValidity)
		if err != nil {
			return nil, nil, err
		}
		sec.Data[SecretCACert], sec.Data[SecretCAKey] = next.CertPEM, next.KeyPEM
		sec.Data[SecretBundle] = append(append([]byte{}, next.CertPEM...), ca.CertPEM...)
		if err := s.Client.Update(ctx, &sec); err != nil {
			if apierrors.IsConflict(err) {
				continue // another replica rotated first
			}
			return nil, nil, fmt.Errorf("rotate CA in Secret %s/%s: %w", s.Namespace, s.SecretName, err)
		}
		return next, sec.Data[SecretBundle], nil
	}
	return nil, nil, fmt.Errorf("CA Secret %s/%s kept changing: retrying later", s.Namespace, s.SecretName)
}

func bundleOf(bundle, ca []byte) []byte {
	if len(bundle) == 0 {
		return ca
	}
	return bundle
}

func writeIfChanged(path string, data []byte) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	return writeAtomic(path, data, 0o644)
}
