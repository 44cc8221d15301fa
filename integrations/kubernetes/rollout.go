package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runbookbot/runbookbot/engine"
)

// rolloutRestart does what `kubectl rollout restart` does: it stamps the
// pod template with kubectl.kubernetes.io/restartedAt, so the deployment
// controller replaces every pod. The deployment as it was before and its
// revision are returned even when the patch fails, for rollback.
func rolloutRestart(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	d, err := k.getDeployment(ctx, cl, c)
	if err != nil {
		return engine.Result{}, err
	}
	before, err := deploymentMap(d)
	if err != nil {
		return engine.Result{}, err
	}
	now := c.Clock.Now().UTC().Format(time.RFC3339)
	res := engine.Result{Output: map[string]any{"deployment": before, "restartedAt": now}, State: map[string]any{}}
	if rev, ok := revision(d.Annotations); ok {
		res.State["previousRevision"] = int(rev)
		res.Output["previousRevision"] = int(rev)
	} else {
		k.log.Warn("deployment has no revision annotation; rollback will use the previous revision", "namespace", d.Namespace, "deployment", d.Name)
	}
	if d.Spec.Paused {
		return res, fmt.Errorf("%s is paused; resume it (kubectl rollout resume) before restarting", deploymentRef(d.Namespace, d.Name))
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RestartedAtAnnotation: now}}}}})
	if err != nil {
		return res, err
	}
	if _, err := cl.Client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return res, apiError(err, "restart", deploymentRef(d.Namespace, d.Name))
	}
	k.log.Info("restarted deployment", "namespace", d.Namespace, "deployment", d.Name, "restartedAt", now)
	return res, nil
}

// annotationsToSkip are the deployment annotations a rollback keeps, as
// kubectl does.
var annotationsToSkip = map[string]bool{
	corev1.LastAppliedConfigAnnotation:          true,
	RevisionAnnotation:                          true,
	"deployment.kubernetes.io/revision-history": true,
	"deployment.kubernetes.io/desired-replicas": true,
	"deployment.kubernetes.io/max-replicas":     true,
	appsv1.DeprecatedRollbackTo:                 true,
}

// rolloutUndo does what `kubectl rollout undo [--to-revision]` does: it
// copies the pod template of the ReplicaSet with the wanted revision into
// the Deployment. Rolling back to the template the deployment already has
// is a successful no-op (skipped: true).
func rolloutUndo(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return engine.Result{}, err
	}
	name, err := requireString(c, "deployment")
	if err != nil {
		return engine.Result{}, err
	}
	to, _, err := intParam(c, "toRevision")
	if err != nil {
		return engine.Result{}, err
	}
	if to < 0 {
		return engine.Result{}, fmt.Errorf("param toRevision: %d is not a revision", to)
	}
	// A concurrent change makes the update conflict; start over from a
	// fresh read (no waiting needed: the conflict means a newer version; the
	// controller may write the status several times in a row right after a
	// scale, hence ten tries).
	for attempt := 1; ; attempt++ {
		res, err := undoOnce(ctx, k, cl, ns, name, to)
		if err == nil || !apierrors.IsConflict(err) || attempt == 10 {
			return res, err
		}
	}
}

func undoOnce(ctx context.Context, k *Integration, cl Cluster, ns, name string, to int64) (engine.Result, error) {
	d, err := fetchDeployment(ctx, cl, ns, name)
	if err != nil {
		return engine.Result{}, err
	}
	before, err := deploymentMap(d)
	if err != nil {
		return engine.Result{}, err
	}
	if d.Spec.Paused {
		return engine.Result{}, fmt.Errorf("%s is paused; resume it (kubectl rollout resume) before rolling back", deploymentRef(ns, name))
	}
	rss, err := ownedReplicaSets(ctx, cl, d)
	if err != nil {
		return engine.Result{}, err
	}
	revs := map[int64]*appsv1.ReplicaSet{}
	var all []int64
	var latest int64
	for _, rs := range rss {
		if r, ok := revision(rs.Annotations); ok {
			revs[r] = rs
			all = append(all, r)
			latest = max(latest, r)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	current, ok := revision(d.Annotations)
	if !ok {
		current = latest
	}
	want := to
	if want == 0 {
		for _, r := range all {
			if r < current {
				want = r
			}
		}
		if want == 0 {
			return engine.Result{}, fmt.Errorf("%s has no revision before %d to roll back to (revisions: %s)", deploymentRef(ns, name), current, revList(all))
		}
	}
	rs, ok := revs[want]
	if !ok {
		return engine.Result{}, fmt.Errorf("%s has no revision %d to roll back to (revisions: %s)", deploymentRef(ns, name), want, revList(all))
	}
	out := map[string]any{"deployment": before, "fromRevision": current, "toRevision": want, "skipped": false}
	if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
		out["skipped"] = true
		out["message"] = fmt.Sprintf("the deployment already runs the template of revision %d", want)
		return engine.Result{Output: out}, nil
	}
	tmpl := rs.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	d.Spec.Template = *tmpl
	for key, v := range rs.Annotations {
		if !annotationsToSkip[key] {
			if d.Annotations == nil {
				d.Annotations = map[string]string{}
			}
			d.Annotations[key] = v
		}
	}
	if _, err := cl.Client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		if apierrors.IsConflict(err) {
			return engine.Result{}, err
		}
		return engine.Result{Output: out}, apiError(err, "roll back", deploymentRef(ns, name))
	}
	k.log.Info("rolled back deployment", "namespace", ns, "deployment", name, "from", current, "to", want)
	return engine.Result{Output: out}, nil
}

// ownedReplicaSets lists the ReplicaSets the deployment controls.
func ownedReplicaSets(ctx context.Context, cl Cluster, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
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
	var out []*appsv1.ReplicaSet
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], d) {
			out = append(out, &list.Items[i])
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no rollout history: " + deploymentRef(d.Namespace, d.Name) + " controls no ReplicaSets")
	}
	return out, nil
}

// equalIgnoreHash compares pod templates without the pod-template-hash
// label, as the deployment controller does.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

func revList(revs []int64) string {
	if len(revs) == 0 {
		return "none recorded"
	}
	s := make([]string, len(revs))
	for i, r := range revs {
		s[i] = strconv.FormatInt(r, 10)
	}
	return strings.Join(s, ", ")
}
