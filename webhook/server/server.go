// Package server assembles skipper-webhook: the admission server (TLS, certificates),
// the reconciler (a controller-runtime manager in the same process) and the webhook
// configurations. The binary and webhooktest both run it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/getkipper/skipper/webhook"
	"github.com/getkipper/skipper/webhook/admission"
	"github.com/getkipper/skipper/webhook/certs"
	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/reconciler"
	"github.com/go-logr/logr"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Scheme holds every type the webhook reads or writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(httpv1alpha1.AddToScheme(Scheme))
	utilruntime.Must(kedav1alpha1.AddToScheme(Scheme))
}

// Names of the in-cluster objects (manifests/).
const (
	ServiceName  = "skipper-webhook"
	CASecretName = "skipper-webhook-ca"
)

// Options configure a Server.
type Options struct {
	RestConfig *rest.Config
	Conf       function.Config
	// Listen is the admission server address; port 0 picks a free one (see Addr).
	Listen string
	// CertDir holds tls.crt and tls.key (and ca.crt); self-signed mode writes them.
	CertDir    string
	SelfSigned bool
	// RegisterURL, when set, makes the server create or update the webhook
	// configurations pointing at this URL. RegisterListen does the same with the URL of
	// the bound Listen address (in-process tests).
	RegisterURL    string
	RegisterListen bool
	// HealthAddr and MetricsAddr are served when not empty.
	HealthAddr, MetricsAddr string
	LeaderElection          bool
	// CAValidity and CertValidity override the self-signed defaults (tests).
	CAValidity, CertValidity time.Duration
	// CertCheckInterval is how often certificates are checked for rotation or reload.
	CertCheckInterval time.Duration
	// ClaimGrace overrides claims.DefaultGrace (tests).
	ClaimGrace time.Duration
	Log        logr.Logger
}

// Server is a configured skipper-webhook.
type Server struct {
	opts     Options
	mgr      ctrl.Manager
	ln       net.Listener
	reloader *certs.Reloader
	self     *certs.SelfSigned
	handler  *admission.Handler
	ready    chan struct{}
	readyErr error
	once     sync.Once
	url      string
	live     client.Client
}

// New checks the options, prepares certificates and the manager, and binds the
// admission listener. Run starts everything.
func New(ctx context.Context, opts Options) (*Server, error) {
	conf := opts.Conf.WithDefaults()
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	opts.Conf = conf
	// Admission answers within the apiserver's timeout; client-side throttling of the
	// claim writes would only add queueing.
	opts.RestConfig = rest.CopyConfig(opts.RestConfig)
	if opts.RestConfig.QPS < 100 {
		opts.RestConfig.QPS, opts.RestConfig.Burst = 100, 200
	}
	if opts.CertDir == "" {
		return nil, errors.New("--cert-dir is required: the directory with tls.crt and tls.key (written there with --self-signed)")
	}
	if opts.CertCheckInterval == 0 {
		opts.CertCheckInterval = 10 * time.Second
	}
	s := &Server{opts: opts, ready: make(chan struct{})}

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on --listen=%s: %w", opts.Listen, err)
	}
	s.ln = ln
	s.url = opts.RegisterURL
	if opts.RegisterListen {
		s.url = "https://" + ln.Addr().String()
	}
	if s.url != "" {
		if u, err := url.Parse(s.url); err != nil || u.Scheme != "https" || u.Host == "" {
			ln.Close()
			return nil, fmt.Errorf("--register-url=%s is not an https:// URL: use e.g. https://127.0.0.1:9443", s.url)
		}
	}

	live, err := client.New(opts.RestConfig, client.Options{Scheme: Scheme})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	s.live = live
	if s.url != "" {
		// Local mode: the system namespace holds the CA and the claims.
		if err := ensureNamespace(ctx, live, conf.SystemNamespace); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if opts.SelfSigned {
		s.self = &certs.SelfSigned{
			Client: live, Namespace: conf.SystemNamespace, SecretName: CASecretName, Dir: opts.CertDir,
			Hosts: s.certHosts(), CAValidity: opts.CAValidity, CertValidity: opts.CertValidity,
		}
		if err := s.self.Sync(ctx); err != nil {
			ln.Close()
			return nil, fmt.Errorf("self-signed certificates: %w", err)
		}
	}
	if s.reloader, err = certs.NewReloader(opts.CertDir); err != nil {
		ln.Close()
		return nil, fmt.Errorf("%w (use --self-signed, or mount the cert-manager Certificate Secret there)", err)
	}
	if s.self != nil {
		s.self.OnReload = func() error { _, err := s.reloader.Reload(); return err }
	}

	metricsAddr, healthAddr := opts.MetricsAddr, opts.HealthAddr
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	skip := true
	mgr, err := ctrl.NewManager(opts.RestConfig, ctrl.Options{
		Scheme:                  Scheme,
		Logger:                  opts.Log,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  healthAddr,
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        "skipper-webhook-reconciler",
		LeaderElectionNamespace: conf.SystemNamespace,
		Controller:              config.Controller{SkipNameValidation: &skip},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {
				Namespaces: map[string]cache.Config{conf.SystemNamespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{claims.LabelClaim: "true"}),
			},
			&corev1.Service{}: {Label: labels.SelectorFromSet(labels.Set{function.LabelManagedBy: function.LabelManagedByValue})},
		}},
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	s.mgr = mgr
	idx := mgr.GetFieldIndexer()
	for _, obj := range []client.Object{&networkingv1.Ingress{}, &httpv1alpha1.HTTPScaledObject{}} {
		if err := idx.IndexField(ctx, obj, admission.HostField, admission.IndexHosts); err != nil {
			ln.Close()
			return nil, fmt.Errorf("index %T by host: %w", obj, err)
		}
	}
	store := &claims.Store{Client: mgr.GetClient(), Live: mgr.GetAPIReader(), Namespace: conf.SystemNamespace, Grace: opts.ClaimGrace}
	s.handler = &admission.Handler{
		Conf: conf, Claims: store, Hosts: admission.IndexedHosts{Reader: mgr.GetClient()},
		Reader: mgr.GetClient(), Log: opts.Log.WithName("admission"),
	}
	observeAdmission(s.handler)
	dc, err := discovery.NewDiscoveryClientForConfig(opts.RestConfig)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	rec := &reconciler.Reconciler{
		Client: mgr.GetClient(), Live: mgr.GetAPIReader(), Conf: conf, Claims: store,
		MiddlewareServed: reconciler.DiscoveryMiddleware(dc, 5*time.Second),
	}
	if err := rec.SetupWithManager(mgr); err != nil {
		ln.Close()
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	if healthAddr != "" {
		_ = mgr.AddHealthzCheck("ping", healthz.Ping)
		_ = mgr.AddReadyzCheck("webhook", func(*http.Request) error {
			select {
			case <-s.ready:
				return s.readyErr
			default:
				return errors.New("admission server not serving yet")
			}
		})
	}
	return s, nil
}

// Addr is the bound admission address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Ready is closed once the admission server serves and the configurations are published.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err is the error that stopped readiness, if any (valid after Ready is closed).
func (s *Server) Err() error { return s.readyErr }

// Manager is the controller-runtime manager (tests read its client).
func (s *Server) Manager() ctrl.Manager { return s.mgr }

// certHosts are the names of the serving certificate.
func (s *Server) certHosts() []string {
	if s.url != "" {
		u, _ := url.Parse(s.url)
		return []string{u.Hostname()}
	}
	ns := s.opts.Conf.SystemNamespace
	return []string{ServiceName + "." + ns + ".svc", ServiceName, ServiceName + "." + ns, ServiceName + "." + ns + ".svc." + s.opts.Conf.KubernetesDNSDomain}
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	mux := http.NewServeMux()
	s.handler.Register(mux)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{GetCertificate: s.reloader.GetCertificate, MinVersion: tls.VersionTLS12},
	}
	err := s.mgr.Add(runnable(func(ctx context.Context) error {
		// Decisions need synced caches (hosts, claims, code).
		if !s.mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("caches did not sync")
		}
		errc := make(chan error, 1)
		go func() { errc <- srv.ServeTLS(s.ln, "", "") }()
		if err := s.publish(ctx, s.bundle()); err != nil {
			s.markReady(err)
			srv.Close()
			return err
		}
		s.markReady(nil)
		if s.self != nil {
			s.self.OnBundle = s.publish
			go s.self.Run(ctx, s.opts.CertCheckInterval, func(err error) { s.opts.Log.Error(err, "certificate rotation") })
		} else {
			go s.reloader.Poll(ctx.Done(), s.opts.CertCheckInterval, func(err error) { s.opts.Log.Error(err, "certificate reload") })
		}
		select {
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdown)
		case err := <-errc:
			return fmt.Errorf("admission server: %w", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("add admission server: %w", err)
	}
	defer s.markReady(errors.New("server stopped"))
	return s.mgr.Start(ctx)
}

func (s *Server) markReady(err error) {
	s.once.Do(func() {
		s.readyErr = err
		close(s.ready)
	})
}

func (s *Server) bundle() []byte {
	b, err := os.ReadFile(filepath.Join(s.opts.CertDir, certs.CAFile))
	if err != nil {
		return nil
	}
	return b
}

// publish writes the webhook configurations (URL mode) or injects the CA bundle into
// the ones from manifests/ (in-cluster self-signed mode). With cert-manager the
// cainjector does it and there is nothing to do.
func (s *Server) publish(ctx context.Context, bundle []byte) error {
	if s.url == "" && s.self == nil {
		return nil
	}
	c := s.live
	m, v, err := webhook.Configurations()
	if err != nil {
		return err
	}
	for i := range m.Webhooks {
		s.point(&m.Webhooks[i].ClientConfig, m.Webhooks[i].NamespaceSelector, bundle)
	}
	for i := range v.Webhooks {
		s.point(&v.Webhooks[i].ClientConfig, v.Webhooks[i].NamespaceSelector, bundle)
	}
	if err := upsert(ctx, c, m, s.url != "", func(cur *admissionregistrationv1.MutatingWebhookConfiguration) {
		if s.url != "" {
			cur.Webhooks = m.Webhooks
			return
		}
		for i := range cur.Webhooks {
			cur.Webhooks[i].ClientConfig.CABundle = bundle
		}
	}); err != nil {
		return err
	}
	return upsert(ctx, c, v, s.url != "", func(cur *admissionregistrationv1.ValidatingWebhookConfiguration) {
		if s.url != "" {
			cur.Webhooks = v.Webhooks
			return
		}
		for i := range cur.Webhooks {
			cur.Webhooks[i].ClientConfig.CABundle = bundle
		}
	})
}

// point aims a webhook at the URL (local mode) and sets the CA bundle and system namespace.
func (s *Server) point(cc *admissionregistrationv1.WebhookClientConfig, sel *metav1.LabelSelector, bundle []byte) {
	cc.CABundle = bundle
	if s.url != "" && cc.Service != nil {
		u := s.url + *cc.Service.Path
		cc.URL, cc.Service = &u, nil
	}
	if sel != nil {
		for i := range sel.MatchExpressions {
			for j, v := range sel.MatchExpressions[i].Values {
				if v == "skipper-system" {
					sel.MatchExpressions[i].Values[j] = s.opts.Conf.SystemNamespace
				}
			}
		}
	}
}

// upsert creates want when create is set and it is missing, or updates the live object
// with change.
func upsert[T client.Object](ctx context.Context, c client.Client, want T, create bool, change func(T)) error {
	cur := want.DeepCopyObject().(T)
	err := c.Get(ctx, client.ObjectKeyFromObject(want), cur)
	if apierrors.IsNotFound(err) {
		if !create {
			return fmt.Errorf("%T %s is missing: apply manifests/ first", want, want.GetName())
		}
		if err := c.Create(ctx, want); err != nil {
			return fmt.Errorf("create %T %s: %w", want, want.GetName(), err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %T %s: %w", want, want.GetName(), err)
	}
	change(cur)
	if err := c.Update(ctx, cur); err != nil {
		return fmt.Errorf("update %T %s: %w", want, want.GetName(), err)
	}
	return nil
}

// ensureNamespace reads before it creates: the ServiceAccount of manifests/ may read its
// namespace but not create namespaces.
func ensureNamespace(ctx context.Context, c client.Client, name string) error {
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{}); err == nil {
		return nil
	}
	err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create system namespace %s: %w", name, err)
	}
	return nil
}

type runnable func(ctx context.Context) error

func (r runnable) Start(ctx context.Context) error { return r(ctx) }

// NeedLeaderElection: every replica serves admission.
func (r runnable) NeedLeaderElection() bool { return false }
