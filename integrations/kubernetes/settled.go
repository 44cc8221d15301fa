package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runbookbot/runbookbot/engine"
)

// generationPoll is how often a lookup re-reads a Deployment whose latest
// change the deployment controller has not acted on yet.
const generationPoll = 100 * time.Millisecond

// errLookupTimeout is the cause of a lookup context that ran out of
// Deps.LookupTimeout.
var errLookupTimeout = errors.New("the lookup timed out")

// settledDeployment reads a Deployment as runbooks see it after a change:
// it waits until the deployment controller has acted on the latest spec
// (observedDeployment), then counts ready, available and updated replicas
// of the current revision only (currentRevisionView). A Deployment nobody
// is changing reads exactly as the API returns it.
// It returns the Deployment as read and its view.
func (k *Integration) settledDeployment(ctx context.Context, cl Cluster, ns, name string) (raw, view *appsv1.Deployment, err error) {
	raw, err = k.observedDeployment(ctx, cl, ns, name)
	if err != nil {
		return nil, nil, err
	}
	view, err = currentRevisionView(ctx, cl, raw)
	if err != nil {
		return nil, nil, err
	}
	return raw, view, nil
}

// observedDeployment fetches a Deployment and, while its status describes
// an older spec than the one stored (status.observedGeneration <
// metadata.generation: the controller has not acted yet, so the old pods
// still look ready), polls until it catches up. The wait is bounded by ctx
// and by Deps.LookupTimeout on the integration's clock.
func (k *Integration) observedDeployment(ctx context.Context, cl Cluster, ns, name string) (*appsv1.Deployment, error) {
	var deadline engine.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for {
		d, err := fetchDeployment(ctx, cl, ns, name)
		if err != nil {
			if context.Cause(ctx) == errLookupTimeout {
				return nil, fmt.Errorf("cannot get %s: no answer within %s", deploymentRef(ns, name), k.deps.LookupTimeout)
			}
			return nil, err
		}
		if d.Status.ObservedGeneration >= d.Generation {
			return d, nil
		}
		if deadline == nil {
			deadline = k.clock.NewTimer(k.deps.LookupTimeout)
		}
		notActed := func() error {
			return fmt.Errorf("%s was changed but the deployment controller has not acted on the change within %s (generation %d, observed %d), so its status still describes the previous spec; is kube-controller-manager running?",
				deploymentRef(ns, name), k.deps.LookupTimeout, d.Generation, d.Status.ObservedGeneration)
		}
		tick := k.clock.NewTimer(generationPoll)
		select {
		case <-ctx.Done():
			tick.Stop()
			if context.Cause(ctx) == errLookupTimeout {
				return nil, notActed()
			}
			return nil, context.Cause(ctx)
		case <-deadline.C():
			tick.Stop()
			return nil, notActed()
		case <-tick.C():
		}
	}
}

// currentRevisionView returns d, or when pods of older revisions still
// exist a copy of d whose readyReplicas, availableReplicas and
// updatedReplicas count only the pods of the current revision's
// ReplicaSet (the one whose revision annotation is the Deployment's), so
// old pods that are still ready do not make a rollout look finished.
func currentRevisionView(ctx context.Context, cl Cluster, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	st := d.Status
	if st.Replicas == st.UpdatedReplicas {
		// Every pod is of the current revision: the counters are its own.
		return d, nil
	}
	rs, err := currentReplicaSet(ctx, cl, d)
	if err != nil {
		return nil, err
	}
	v := d.DeepCopy()
	v.Status.ReadyReplicas, v.Status.AvailableReplicas, v.Status.UpdatedReplicas = 0, 0, 0
	if rs != nil {
		v.Status.ReadyReplicas = rs.Status.ReadyReplicas
		v.Status.AvailableReplicas = rs.Status.AvailableReplicas
		v.Status.UpdatedReplicas = rs.Status.Replicas
	}
	v.Status.UnavailableReplicas = max(0, specReplicas(d)-v.Status.AvailableReplicas)
	return v, nil
}

// currentReplicaSet finds the ReplicaSet of the Deployment's current
// revision: by the revision annotation, or, when the Deployment has none,
// by its pod template as the controller does. It is nil when the
// controller has not created it yet.
func currentReplicaSet(ctx context.Context, cl Cluster, d *appsv1.Deployment) (*appsv1.ReplicaSet, error) {
	if d.Spec.Selector == nil {
		return nil, fmt.Errorf("%s has no selector", deploymentRef(d.Namespace, d.Name))
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("%s has an invalid selector: %w", deploymentRef(d.Namespace, d.Name), err)
	}
	list, err := cl.Client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, apiError(err, "list", fmt.Sprintf("replicasets of deployment %q in namespace %q", d.Name, d.Namespace))
	}
	want, hasRev := revision(d.Annotations)
	for i := range list.Items {
		rs := &list.Items[i]
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		if hasRev {
			if r, ok := revision(rs.Annotations); ok && r == want {
				return rs, nil
			}
			continue
		}
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			return rs, nil
		}
	}
	return nil, nil
}

// observed reports whether the status describes the current spec.
func observed(d *appsv1.Deployment) bool {
	return d.Status.ObservedGeneration >= d.Generation
}

// rolledOut reports whether every pod is of the current revision and
// there are as many as wanted (they may not all be ready).
func rolledOut(d *appsv1.Deployment) bool {
	st := d.Status
	return observed(d) && st.UpdatedReplicas == specReplicas(d) && st.Replicas == st.UpdatedReplicas
}

// settled reports whether a rollout is over: the controller has acted on
// the latest spec, every pod is of the current revision, there are as many
// as wanted, and all of them are available. It reads the same on d and on
// its current-revision view, because once only current pods remain their
// counters are the Deployment's.
func settled(d *appsv1.Deployment) bool {
	return rolledOut(d) && d.Status.AvailableReplicas == d.Status.UpdatedReplicas
}

// olderReady is how many ready pods of older revisions the view left out.
func olderReady(raw, view *appsv1.Deployment) int32 {
	return max(0, raw.Status.ReadyReplicas-view.Status.ReadyReplicas)
}
