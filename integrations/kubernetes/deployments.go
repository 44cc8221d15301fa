package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runbookbot/runbookbot/engine"
)

// fieldManager identifies runbookbot's writes in managedFields.
const fieldManager = "runbookbot"

// getDeployment reads the namespace and deployment params and fetches it.
func (k *Integration) getDeployment(ctx context.Context, cl Cluster, c *engine.Call) (*appsv1.Deployment, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return nil, err
	}
	name, err := requireString(c, "deployment")
	if err != nil {
		return nil, err
	}
	return fetchDeployment(ctx, cl, ns, name)
}

func fetchDeployment(ctx context.Context, cl Cluster, ns, name string) (*appsv1.Deployment, error) {
	d, err := cl.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, apiError(err, "get", deploymentRef(ns, name))
	}
	return d, nil
}

// deploymentOrPod names the deployment from params.deployment or, failing
// that, from the pod (params podName/pod, or the execution's podName).
func (k *Integration) deploymentOrPod(ctx context.Context, cl Cluster, c *engine.Call, ns string) (string, error) {
	if d := stringParam(c, "deployment"); d != "" {
		return d, nil
	}
	pod := stringParam(c, "podName")
	if pod == "" {
		pod = stringParam(c, "pod")
	}
	if pod == "" {
		pod = varString(c.Vars, "podName")
	}
	if pod == "" {
		return "", errors.New("no deployment given: set params.deployment, or run with a podName parameter so the deployment can be found from the pod")
	}
	return k.deploymentFor(ctx, cl, stringParam(c, "kubeContext"), ns, pod)
}

func checkDeploymentReady(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return engine.Result{}, err
	}
	minReady, err := int32Param(c, "minReadyReplicas", 1)
	if err != nil {
		return engine.Result{}, err
	}
	name, err := k.deploymentOrPod(ctx, cl, c, ns)
	if err != nil {
		return engine.Result{}, err
	}
	raw, view, err := k.settledDeployment(ctx, cl, ns, name)
	if err != nil {
		return engine.Result{}, err
	}
	m, err := deploymentMap(view)
	if err != nil {
		return engine.Result{}, err
	}
	ready := view.Status.ReadyReplicas
	out := map[string]any{"deployment": m, "readyReplicas": int64(ready), "minReadyReplicas": int64(minReady)}
	if ready < minReady {
		note := ""
		if n := olderReady(raw, view); n > 0 {
			note = fmt.Sprintf("; a rollout is in progress and %d more ready replicas are of an older revision", n)
		}
		//lint:ignore ST1005 the wording is the runbook contract on-call engineers know
		return engine.Result{Output: out}, fmt.Errorf("Insufficient ready replicas: %d < %d (deployment %q in namespace %q%s)", ready, minReady, name, ns, note)
	}
	return engine.Result{Output: out}, nil
}

func getDeploymentAction(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	d, err := k.getDeployment(ctx, cl, c)
	if err != nil {
		return engine.Result{}, err
	}
	m, err := deploymentMap(d)
	if err != nil {
		return engine.Result{}, err
	}
	return engine.Result{Output: map[string]any{"deployment": m}}, nil
}

func scale(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	n, ok, err := intParam(c, "replicas")
	if err != nil {
		return engine.Result{}, err
	}
	if !ok {
		return engine.Result{}, errors.New("param replicas is empty")
	}
	if n < 0 || n > 1<<31-1 {
		return engine.Result{}, fmt.Errorf("param replicas: %d is out of range", n)
	}
	d, err := k.getDeployment(ctx, cl, c)
	if err != nil {
		return engine.Result{}, err
	}
	before, err := deploymentMap(d)
	if err != nil {
		return engine.Result{}, err
	}
	prev := int64(specReplicas(d))
	out := map[string]any{"deployment": before, "previousReplicas": prev, "replicas": n, "changed": prev != n}
	if prev == n {
		return engine.Result{Output: out}, nil
	}
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	if _, err := cl.Client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		out["changed"] = false
		return engine.Result{Output: out}, apiError(err, "scale", deploymentRef(d.Namespace, d.Name))
	}
	k.log.Info("scaled deployment", "namespace", d.Namespace, "deployment", d.Name, "from", prev, "to", n)
	return engine.Result{Output: out}, nil
}

// rolloutStatus says whether a rollout is complete, like `kubectl rollout
// status`, plus every replica counter matching spec.replicas. fatal is set
// when the rollout can no longer complete.
func rolloutStatus(d *appsv1.Deployment) (done bool, waiting string, fatal error) {
	want := specReplicas(d)
	st := d.Status
	if !observed(d) {
		return false, "the deployment controller has not observed the latest spec yet", nil
	}
	for _, cond := range st.Conditions {
		if cond.Type == appsv1.DeploymentProgressing && cond.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("%s exceeded its progress deadline: %s", deploymentRef(d.Namespace, d.Name), cond.Message)
		}
	}
	// The settled view (settled.go) with every replica ready: once only
	// pods of the current revision remain, these counters are theirs.
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want), nil
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas), nil
	case st.ReadyReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, want), nil
	case st.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want), nil
	case !settled(d) || st.ReadyReplicas != want:
		return false, fmt.Sprintf("replicas %d, updated %d, ready %d, available %d; want %d", st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, want), nil
	}
	return true, "", nil
}

func waitForRollout(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return engine.Result{}, err
	}
	name, err := requireString(c, "deployment")
	if err != nil {
		return engine.Result{}, err
	}
	timeout, err := c.Duration("timeout", 5*time.Minute)
	if err != nil {
		return engine.Result{}, err
	}
	poll, err := c.Duration("pollInterval", 5*time.Second)
	if err != nil {
		return engine.Result{}, err
	}
	if poll <= 0 {
		poll = 5 * time.Second
	}
	start := c.Clock.Now()
	deadline := c.Clock.NewTimer(timeout)
	defer deadline.Stop()
	last := "no status read yet"
	for attempt := 1; ; attempt++ {
		d, err := cl.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return engine.Result{}, apiError(err, "get", deploymentRef(ns, name))
		case err != nil:
			if ctx.Err() != nil {
				return engine.Result{}, context.Cause(ctx)
			}
			last = apiError(err, "get", deploymentRef(ns, name)).Error()
		default:
			m, merr := deploymentMap(d)
			if merr != nil {
				return engine.Result{}, merr
			}
			out := map[string]any{"deployment": m, "attempts": attempt, "waitedSeconds": c.Clock.Now().Sub(start).Seconds()}
			done, waiting, fatal := rolloutStatus(d)
			if fatal != nil {
				return engine.Result{Output: out}, fatal
			}
			if done {
				return engine.Result{Output: out}, nil
			}
			last = waiting
		}
		tick := c.Clock.NewTimer(poll)
		select {
		case <-ctx.Done():
			tick.Stop()
			return engine.Result{}, context.Cause(ctx)
		case <-deadline.C():
			tick.Stop()
			return engine.Result{Output: map[string]any{"attempts": attempt}},
				fmt.Errorf("%s did not finish rolling out within %s: %s", deploymentRef(ns, name), timeout, last)
		case <-tick.C():
		}
	}
}
