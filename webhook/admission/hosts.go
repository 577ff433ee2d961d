package admission

import (
	"context"
	"fmt"

	"github.com/getkipper/skipper/webhook/function"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HostField is the cache index of Ingresses and HTTPScaledObjects by host.
const HostField = "skipper.hosts"

// IngressHosts lists every host an Ingress routes or holds a certificate for.
func IngressHosts(ing *networkingv1.Ingress) []string {
	var hosts []string
	for _, r := range ing.Spec.Rules {
		if r.Host != "" {
			hosts = append(hosts, r.Host)
		}
	}
	for _, t := range ing.Spec.TLS {
		hosts = append(hosts, t.Hosts...)
	}
	return dedup(hosts)
}

func dedup(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, h := range in {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// IndexHosts is the indexer function for HostField.
func IndexHosts(obj client.Object) []string {
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		return IngressHosts(o)
	case *httpv1alpha1.HTTPScaledObject:
		return dedup(append([]string(nil), o.Spec.Hosts...))
	}
	return nil
}

// Use is an object that routes a host. Function is set when the object is a Skipper
// companion of that function (in the same namespace).
type Use struct{ Kind, Namespace, Name, Function string }

func (u Use) String() string { return fmt.Sprintf("%s %s/%s", u.Kind, u.Namespace, u.Name) }

// HostUsers finds the Ingresses and HTTPScaledObjects that route a host.
type HostUsers interface {
	HostUsers(ctx context.Context, host string) ([]Use, error)
}

// IndexedHosts answers from a cache indexed by HostField.
type IndexedHosts struct{ Reader client.Reader }

// HostUsers lists the objects routing host.
func (x IndexedHosts) HostUsers(ctx context.Context, host string) ([]Use, error) {
	var out []Use
	var ings networkingv1.IngressList
	if err := x.Reader.List(ctx, &ings, client.MatchingFields{HostField: host}); err != nil {
		return nil, fmt.Errorf("list Ingresses with host %s: %w", host, err)
	}
	for i := range ings.Items {
		out = append(out, useOf("Ingress", &ings.Items[i]))
	}
	var hsos httpv1alpha1.HTTPScaledObjectList
	if err := x.Reader.List(ctx, &hsos, client.MatchingFields{HostField: host}); err != nil {
		return nil, fmt.Errorf("list HTTPScaledObjects with host %s: %w", host, err)
	}
	for i := range hsos.Items {
		out = append(out, useOf("HTTPScaledObject", &hsos.Items[i]))
	}
	return out, nil
}

func useOf(kind string, obj client.Object) Use {
	u := Use{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
	if l := obj.GetLabels(); l[function.LabelManagedBy] == function.LabelManagedByValue {
		u.Function = l[function.LabelFunctionName]
	}
	return u
}
