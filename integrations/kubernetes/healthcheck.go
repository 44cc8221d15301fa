package kubernetes

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ResolveHealthcheck supplies the live `healthcheck` root: the health of
// the Deployment the `deployment` root reads (see the package doc), for
// rollback triggers such as `healthcheck.failed`. A missing Deployment is
// an answer (failed); a cluster that cannot be asked is an error.
func (k *Integration) ResolveHealthcheck(ctx context.Context, _ []string, vars map[string]any) (any, error) {
	ctx, cancel := k.lookupCtx(ctx)
	defer cancel()
	cl, ns, name, err := k.target(ctx, vars)
	var missing *missingError
	if errors.As(err, &missing) {
		return missingHealth(missing.name, missing.Error()), nil
	}
	if err != nil {
		return nil, err
	}
	raw, view, err := k.settledDeployment(ctx, cl, ns, name)
	if apierrors.IsNotFound(err) {
		return missingHealth(name, deploymentRef(ns, name)+" not found"), nil
	}
	if err != nil {
		return nil, err
	}
	h := health(view)
	if n := olderReady(raw, view); n > 0 && !h.failed && !h.healthy {
		h.reason += fmt.Sprintf(" (%d ready replicas of older revisions not counted)", n)
	}
	return h.value(name), nil
}

// deploymentHealth is a healthcheck answer.
type deploymentHealth struct {
	failed, healthy, settled bool
	reason                   string
	ready, desired           int32
}

func (h deploymentHealth) value(name string) map[string]any {
	return map[string]any{
		"failed":          h.failed,
		"healthy":         h.healthy,
		"settled":         h.settled,
		"reason":          h.reason,
		"readyReplicas":   int64(h.ready),
		"desiredReplicas": int64(h.desired),
		"deployment":      name,
	}
}

func missingHealth(name, reason string) map[string]any {
	return deploymentHealth{failed: true, reason: reason}.value(name)
}

// health judges a current-revision view of a Deployment.
func health(d *appsv1.Deployment) deploymentHealth {
	st := d.Status
	h := deploymentHealth{settled: settled(d), ready: st.ReadyReplicas, desired: specReplicas(d)}
	progressing := condition(d, appsv1.DeploymentProgressing)
	available := condition(d, appsv1.DeploymentAvailable)
	switch {
	case progressing != nil && progressing.Status == corev1.ConditionFalse:
		h.failed = true
		h.reason = "rollout stuck: " + progressing.Reason
		if progressing.Message != "" {
			h.reason += " (" + progressing.Message + ")"
		}
	case rolledOut(d) && h.ready < h.desired:
		h.failed = true
		h.reason = fmt.Sprintf("%d of %d replicas ready", h.ready, h.desired)
	case available != nil && available.Status == corev1.ConditionFalse:
		h.failed = true
		h.reason = fmt.Sprintf("not available: %d of %d replicas ready", h.ready, h.desired)
		if available.Reason != "" {
			h.reason += " (" + available.Reason + ")"
		}
	case h.settled:
		h.healthy = true
		h.reason = fmt.Sprintf("%d of %d replicas ready", h.ready, h.desired)
	default:
		h.reason = fmt.Sprintf("rollout in progress: %d of %d replicas updated, %d ready, %d available",
			st.UpdatedReplicas, h.desired, h.ready, st.AvailableReplicas)
	}
	return h
}

// condition returns the Deployment's condition of type t, or nil.
func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}
