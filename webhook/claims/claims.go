// Package claims makes function hosts unique in the whole cluster. A claim is a Lease in
// Skipper's system namespace named after the host; etcd accepts only one create of a name,
// so of any number of concurrent admissions of the same host exactly one wins.
package claims

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/getkipper/skipper/webhook/function"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels of a claim: the holder, so the reconciler can release a function's claims.
const (
	LabelClaim          = function.Prefix + "host-claim" // "true"
	LabelHolderNS       = function.Prefix + "claim-namespace"
	LabelHolderName     = function.Prefix + "claim-name"
	AnnotationHost      = function.Prefix + "host"
	DefaultGrace        = 15 * time.Second
	holderIdentitySplit = "/"
)

// Holder is the function Deployment that owns a host.
type Holder struct{ Namespace, Name string }

func (h Holder) String() string { return h.Namespace + holderIdentitySplit + h.Name }

// ConflictError says a host is held by another function.
type ConflictError struct {
	Host   string
	Holder Holder
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("host %s is already used by function %s (Deployment %s in namespace %s)",
		e.Host, e.Holder, e.Holder.Name, e.Holder.Namespace)
}

// Store reads and writes claims.
type Store struct {
	// Client writes claims; its reads may come from a cache.
	Client client.Client
	// Live reads straight from the apiserver, for decisions a stale cache must not make.
	Live client.Reader
	// Namespace holds the claims (Skipper's system namespace).
	Namespace string
	// Grace protects a freshly (re)claimed host from being treated as stale while the
	// admitted request is still on its way to etcd.
	Grace time.Duration
	Now   func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) grace() time.Duration {
	if s.Grace > 0 {
		return s.Grace
	}
	return DefaultGrace
}

// Claim makes h the holder of host. renew refreshes the claim's time when h already
// holds it (a function that is new or newly labelled). With dryRun nothing is written:
// the answer is what a real request would get unless another request races it.
func (s *Store) Claim(ctx context.Context, host string, h Holder, renew, dryRun bool) error {
	var cached coordinationv1.Lease
	err := s.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: host}, &cached)
	if err == nil && holderOf(&cached) == h && !renew {
		return nil // the common UPDATE: already ours, nothing to write
	}
	if dryRun {
		lease, err := s.get(ctx, host)
		if err != nil || lease == nil || holderOf(lease) == h {
			return err
		}
		if stale, err := s.stale(ctx, lease); err != nil || stale {
			return err
		}
		return &ConflictError{Host: host, Holder: holderOf(lease)}
	}
	for attempt := 0; attempt < 3; attempt++ {
		err := s.Client.Create(ctx, s.newLease(host, h))
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create claim %s/%s: %w", s.Namespace, host, err)
		}
		lease, err := s.get(ctx, host)
		if err != nil {
			return err
		}
		if lease == nil {
			continue // released in between: try the create again
		}
		if holderOf(lease) == h {
			if !renew {
				return nil
			}
			lease.Spec.RenewTime = &metav1.MicroTime{Time: s.now()}
			if err := s.Client.Update(ctx, lease); err != nil {
				return fmt.Errorf("renew claim %s/%s: %w", s.Namespace, host, err)
			}
			return nil
		}
		stale, err := s.stale(ctx, lease)
		if err != nil {
			return err
		}
		if !stale {
			return &ConflictError{Host: host, Holder: holderOf(lease)}
		}
		// Take over a stale claim; the preconditions make concurrent takeovers safe:
		// only one delete succeeds and then only one create.
		if err := s.deleteExact(ctx, lease); err != nil {
			return err
		}
	}
	return fmt.Errorf("claim %s/%s kept changing while claiming host %s: retry the request", s.Namespace, host, host)
}

// Holder returns the live holder of host, if any.
func (s *Store) Holder(ctx context.Context, host string) (Holder, bool, error) {
	lease, err := s.get(ctx, host)
	if err != nil || lease == nil {
		return Holder{}, false, err
	}
	return holderOf(lease), true, nil
}

// CachedHolder returns the holder of host as the cache knows it.
func (s *Store) CachedHolder(ctx context.Context, host string) (Holder, bool, error) {
	var lease coordinationv1.Lease
	err := s.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: host}, &lease)
	if apierrors.IsNotFound(err) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("read claim %s/%s: %w", s.Namespace, host, err)
	}
	return holderOf(&lease), true, nil
}

// Release deletes h's claims that are past the grace period and returns how long to
// wait before calling again for the ones still inside it (0 when none are left). The
// caller has checked, live, that h is gone or no longer an HTTP function.
func (s *Store) Release(ctx context.Context, h Holder) (time.Duration, error) {
	var list coordinationv1.LeaseList
	if err := s.Client.List(ctx, &list, client.InNamespace(s.Namespace),
		client.MatchingLabels{LabelClaim: "true", LabelHolderNS: h.Namespace, LabelHolderName: h.Name}); err != nil {
		return 0, fmt.Errorf("list claims of %s: %w", h, err)
	}
	var wait time.Duration
	for i := range list.Items {
		lease := &list.Items[i]
		if holderOf(lease) != h {
			continue
		}
		if left := s.graceLeft(lease); left > 0 {
			wait = max(wait, left)
			continue
		}
		if err := s.deleteExact(ctx, lease); err != nil && !apierrors.IsConflict(err) {
			return 0, err
		}
	}
	return wait, nil
}

// Pending reports how long until the youngest of h's claims (read from the cache) leaves
// its grace period, and whether h has any claim at all. While every claim is inside it,
// Release would delete nothing, so the caller can wait without reading anything live.
func (s *Store) Pending(ctx context.Context, h Holder) (wait time.Duration, any bool, err error) {
	var list coordinationv1.LeaseList
	if err := s.Client.List(ctx, &list, client.InNamespace(s.Namespace),
		client.MatchingLabels{LabelClaim: "true", LabelHolderNS: h.Namespace, LabelHolderName: h.Name}); err != nil {
		return 0, false, fmt.Errorf("list claims of %s: %w", h, err)
	}
	wait = -1
	for i := range list.Items {
		if holderOf(&list.Items[i]) != h {
			continue
		}
		any = true
		left := s.graceLeft(&list.Items[i])
		if wait < 0 || left < wait {
			wait = left
		}
	}
	return wait, any, nil
}

// HolderOfClaim parses a claim Lease (for the reconciler's claim watch).
func HolderOfClaim(obj client.Object) (Holder, bool) {
	l := obj.GetLabels()
	if l[LabelClaim] != "true" {
		return Holder{}, false
	}
	return Holder{Namespace: l[LabelHolderNS], Name: l[LabelHolderName]}, true
}

func (s *Store) get(ctx context.Context, host string) (*coordinationv1.Lease, error) {
	var lease coordinationv1.Lease
	err := s.Live.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: host}, &lease)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read claim %s/%s: %w", s.Namespace, host, err)
	}
	return &lease, nil
}

func (s *Store) graceLeft(lease *coordinationv1.Lease) time.Duration {
	t := lease.CreationTimestamp.Time
	if lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(t) {
		t = lease.Spec.RenewTime.Time
	}
	return t.Add(s.grace()).Sub(s.now())
}

// stale reports whether a claim's holder is gone: past the grace period and its
// Deployment (read live) missing or no longer a function with this host (not a
// function, or an event-triggered one, which has no host).
func (s *Store) stale(ctx context.Context, lease *coordinationv1.Lease) (bool, error) {
	if s.graceLeft(lease) > 0 {
		return false, nil
	}
	h := holderOf(lease)
	var d appsv1.Deployment
	err := s.Live.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: h.Name}, &d)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read holder %s of claim %s: %w", h, lease.Name, err)
	}
	return !function.IsFunction(&d) || !function.IsHTTPTrigger(d.Annotations) || d.DeletionTimestamp != nil, nil
}

func (s *Store) deleteExact(ctx context.Context, lease *coordinationv1.Lease) error {
	uid, rv := lease.UID, lease.ResourceVersion
	err := s.Client.Delete(ctx, lease, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release claim %s/%s: %w", s.Namespace, lease.Name, err)
	}
	return nil
}

func (s *Store) newLease(host string, h Holder) *coordinationv1.Lease {
	now := metav1.MicroTime{Time: s.now()}
	id := h.String()
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:      host,
			Namespace: s.Namespace,
			Labels: map[string]string{
				function.LabelManagedBy: function.LabelManagedByValue,
				LabelClaim:              "true",
				LabelHolderNS:           h.Namespace,
				LabelHolderName:         h.Name,
			},
			Annotations: map[string]string{AnnotationHost: host},
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &id, AcquireTime: &now, RenewTime: &now},
	}
}

func holderOf(l *coordinationv1.Lease) Holder {
	if l.Spec.HolderIdentity == nil {
		return Holder{}
	}
	ns, name, _ := strings.Cut(*l.Spec.HolderIdentity, holderIdentitySplit)
	return Holder{Namespace: ns, Name: name}
}

// IsConflict reports whether err is a ConflictError.
func IsConflict(err error) (*ConflictError, bool) {
	var c *ConflictError
	ok := errors.As(err, &c)
	return c, ok
}
