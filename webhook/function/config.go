package function

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/getkipper/skipper/internal/version"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is the cluster-wide configuration of the expansion (the --config file of
// skipper-webhook). Every field is optional; WithDefaults fills the gaps.
type Config struct {
	// ClusterDomain is the public domain functions are served under:
	// https://fn-<name>-<clusterDomain>.
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// KubernetesDNSDomain is the in-cluster DNS suffix (cluster.local) used by the
	// ExternalName proxy Service.
	KubernetesDNSDomain string `json:"kubernetesDNSDomain,omitempty"`
	// Interceptor is the KEDA HTTP add-on interceptor proxy Service.
	Interceptor Interceptor `json:"interceptor,omitempty"`
	// IngressClass is the class of the function Ingresses.
	IngressClass string `json:"ingressClass,omitempty"`
	// CertManagerIssuer, when set, is written as the cert-manager issuer annotation of
	// the function Ingresses; CertManagerIssuerKind is ClusterIssuer (default) or Issuer.
	CertManagerIssuer     string `json:"certManagerIssuer,omitempty"`
	CertManagerIssuerKind string `json:"certManagerIssuerKind,omitempty"`
	// RuntimeImages maps a runtime (node, python) to the image that runs inline code.
	RuntimeImages map[string]string `json:"runtimeImages,omitempty"`
	// PollerImage is the skipper-poll sidecar of event-triggered functions.
	PollerImage string `json:"pollerImage,omitempty"`
	// SystemNamespace is Skipper's own namespace: never mutated, holds the host claims.
	SystemNamespace string `json:"systemNamespace,omitempty"`
	// TraefikMiddleware says the cluster serves the Traefik Middleware CRD. It is
	// discovered at run time, never read from the file.
	TraefikMiddleware bool `json:"-"`
}

// Interceptor locates the KEDA HTTP add-on interceptor proxy.
type Interceptor struct {
	Service   string `json:"service,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Port      int32  `json:"port,omitempty"`
}

// Defaults of Config.
const (
	DefaultClusterDomain        = "127-0-0-1.sslip.io"
	DefaultKubernetesDNSDomain  = "cluster.local"
	DefaultInterceptorService   = "keda-add-ons-http-interceptor-proxy"
	DefaultInterceptorNamespace = "keda"
	DefaultInterceptorPort      = 8080
	DefaultIngressClass         = "traefik"
	DefaultSystemNamespace      = "skipper-system"
	DefaultNodeImage            = "getkipper/skipper-runtime-node:latest"
	DefaultPythonImage          = "getkipper/skipper-runtime-python:latest"
	// PollerImageRepository is tagged with the webhook's release (DefaultPollerImage).
	PollerImageRepository = "getkipper/skipper-poll"
	IssuerKindCluster     = "ClusterIssuer"
	IssuerKindNamespaced  = "Issuer"
)

// DefaultConfig is the configuration with every default applied.
func DefaultConfig() Config { return Config{}.WithDefaults() }

// WithDefaults returns c with every empty field set to its default.
func (c Config) WithDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ClusterDomain, DefaultClusterDomain)
	def(&c.KubernetesDNSDomain, DefaultKubernetesDNSDomain)
	def(&c.Interceptor.Service, DefaultInterceptorService)
	def(&c.Interceptor.Namespace, DefaultInterceptorNamespace)
	if c.Interceptor.Port == 0 {
		c.Interceptor.Port = DefaultInterceptorPort
	}
	def(&c.IngressClass, DefaultIngressClass)
	def(&c.SystemNamespace, DefaultSystemNamespace)
	def(&c.PollerImage, DefaultPollerImage())
	if c.CertManagerIssuer != "" {
		def(&c.CertManagerIssuerKind, IssuerKindCluster)
	}
	images := map[string]string{RuntimeNode: DefaultNodeImage, RuntimePython: DefaultPythonImage}
	for k, v := range c.RuntimeImages {
		images[k] = v
	}
	c.RuntimeImages = images
	return c
}

var releaseTag = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// DefaultPollerImage is skipper-poll of the same release as this binary, so the sidecar
// and the webhook that injects it agree on the environment; builds that are not a
// release (dev, git descriptions) use latest.
func DefaultPollerImage() string {
	if releaseTag.MatchString(version.Version) {
		return PollerImageRepository + ":" + version.Version
	}
	return PollerImageRepository + ":latest"
}

// Validate reports the first bad field of a defaulted Config.
func (c Config) Validate() error {
	if errs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(errs) > 0 {
		return fmt.Errorf("config clusterDomain %q is not a DNS name (%s): use a domain such as 46-225-91-12.kipper.run", c.ClusterDomain, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(c.KubernetesDNSDomain); len(errs) > 0 {
		return fmt.Errorf("config kubernetesDNSDomain %q is not a DNS name: use the cluster DNS suffix, usually cluster.local", c.KubernetesDNSDomain)
	}
	if errs := validation.IsDNS1035Label(c.Interceptor.Service); len(errs) > 0 {
		return fmt.Errorf("config interceptor.service %q is not a Service name: use e.g. %s", c.Interceptor.Service, DefaultInterceptorService)
	}
	if errs := validation.IsDNS1123Label(c.Interceptor.Namespace); len(errs) > 0 {
		return fmt.Errorf("config interceptor.namespace %q is not a namespace name: use e.g. %s", c.Interceptor.Namespace, DefaultInterceptorNamespace)
	}
	if c.Interceptor.Port < 1 || c.Interceptor.Port > 65535 {
		return fmt.Errorf("config interceptor.port %d is out of range: use a port between 1 and 65535 (default %d)", c.Interceptor.Port, DefaultInterceptorPort)
	}
	if errs := validation.IsDNS1123Subdomain(c.IngressClass); len(errs) > 0 {
		return fmt.Errorf("config ingressClass %q is not an IngressClass name: use e.g. %s", c.IngressClass, DefaultIngressClass)
	}
	if errs := validation.IsDNS1123Label(c.SystemNamespace); len(errs) > 0 {
		return fmt.Errorf("config systemNamespace %q is not a namespace name: use e.g. %s", c.SystemNamespace, DefaultSystemNamespace)
	}
	if c.CertManagerIssuer != "" && c.CertManagerIssuerKind != IssuerKindCluster && c.CertManagerIssuerKind != IssuerKindNamespaced {
		return fmt.Errorf("config certManagerIssuerKind %q is unknown: use %s or %s", c.CertManagerIssuerKind, IssuerKindCluster, IssuerKindNamespaced)
	}
	if strings.TrimSpace(c.PollerImage) == "" || strings.ContainsAny(c.PollerImage, " \t\n") {
		return fmt.Errorf("config pollerImage %q is not an image reference: use e.g. %s", c.PollerImage, DefaultPollerImage())
	}
	for _, rt := range []string{RuntimeNode, RuntimePython} {
		if strings.TrimSpace(c.RuntimeImages[rt]) == "" {
			return fmt.Errorf("config runtimeImages.%s is empty: set an image reference", rt)
		}
	}
	return nil
}

// LoadConfig parses a YAML configuration strictly (unknown fields are errors, so typos
// surface), applies the defaults and validates it.
func LoadConfig(data []byte) (Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Host is the public host name of function name: fn-<name>-<clusterDomain>.
func (c Config) Host(name string) string { return "fn-" + name + "-" + c.ClusterDomain }

// URL is the public URL of function name.
func (c Config) URL(name string) string { return "https://" + c.Host(name) }
