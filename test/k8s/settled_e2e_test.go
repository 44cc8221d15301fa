package k8s_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	rbk8s "github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/test/k8s"
)

// settledWorld is the kubernetes integration on a real cluster, called as
// the engine calls it: actions through the registry, roots through their
// resolvers.
type settledWorld struct {
	t     *testing.T
	cs    kubernetes.Interface
	reg   *engine.Registry
	kube  *rbk8s.Integration
	clock *enginetest.FakeClock // stamps restartedAt, one minute apart
	ns    string
}

func newSettledWorld(t *testing.T, c *k8s.Cluster, ns string) *settledWorld {
	c.Namespace(t, ns)
	w := &settledWorld{t: t, cs: c.Clientset(), reg: engine.NewRegistry(), ns: ns,
		kube:  rbk8s.New(rbk8s.Deps{Client: c.Clientset(), Config: c.RESTConfig()}),
		clock: enginetest.NewFakeClock(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))}
	w.kube.Register(w.reg)
	return w
}

func (w *settledWorld) create(d *appsv1.Deployment) {
	w.t.Helper()
	if _, err := w.cs.AppsV1().Deployments(w.ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *settledWorld) restart(name string) {
	w.t.Helper()
	w.clock.Advance(time.Minute)
	spec, _ := w.reg.Lookup("kubernetes", "rolloutRestart")
	call := &engine.Call{ExecutionID: "e2e", Step: &engine.Step{Name: "rolling-restart", Type: "kubernetes", Action: "rolloutRestart"},
		Params: map[string]any{"namespace": w.ns, "deployment": name}, Vars: map[string]any{}, Clock: w.clock}
	if _, err := spec.Run.Run(context.Background(), call); err != nil {
		w.t.Fatalf("rolloutRestart: %v", err)
	}
}

func (w *settledWorld) root(ctx context.Context, root, name string) map[string]any {
	w.t.Helper()
	vars := map[string]any{"namespace": w.ns, "deployment": name}
	var v any
	var err error
	switch root {
	case "deployment":
		v, err = w.kube.ResolveDeployment(ctx, nil, vars)
	case "healthcheck":
		v, err = w.kube.ResolveHealthcheck(ctx, nil, vars)
	}
	if err != nil {
		w.t.Fatalf("%s root: %v", root, err)
	}
	return v.(map[string]any)
}

func (w *settledWorld) raw(name string) *appsv1.Deployment {
	w.t.Helper()
	d, err := w.cs.AppsV1().Deployments(w.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

// currentReplicaSet is the ReplicaSet of the deployment's revision.
func (w *settledWorld) currentReplicaSet(name string) appsv1.ReplicaSet {
	w.t.Helper()
	rev := w.raw(name).Annotations[rbk8s.RevisionAnnotation]
	for _, rs := range replicaSets(context.Background(), w.t, w.cs, w.ns, name) {
		if rs.Annotations[rbk8s.RevisionAnnotation] == rev {
			return rs
		}
	}
	w.t.Fatalf("no ReplicaSet of revision %s", rev)
	return appsv1.ReplicaSet{}
}

func (w *settledWorld) setUnschedulable(on bool) {
	w.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := w.cs.CoreV1().Nodes().Patch(context.Background(), k8s.NodeName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func num(m map[string]any, keys ...string) int64 {
	var v any = m
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	n, _ := v.(int64)
	return n
}

// verifyHolds is the seed's verify-restart-success condition on a
// deployment root value.
func verifyHolds(t *testing.T, v map[string]any) bool {
	t.Helper()
	cond, err := engine.CompileCondition("deployment.status.readyReplicas == deployment.spec.replicas")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := cond.Eval(map[string]any{"deployment": v})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestSettledDeploymentE2E(t *testing.T) {
	c := k8s.Start(t)
	w := newSettledWorld(t, c, "settled")
	ctx := t.Context()
	w.create(deployment(w.ns, "web", 3))
	poll(t, 60*time.Second, "web rolled out", func(ctx context.Context) (bool, string) {
		return rolledOut(ctx, w.cs, w.ns, "web")
	})

	// Read at once after a real restart, and then until the seed's check
	// holds: it never holds before the new ReplicaSet's pods are ready.
	t.Run("restart", func(t *testing.T) {
		w.t = t
		w.restart("web")
		v := w.root(ctx, "deployment", "web")
		if num(v, "status", "observedGeneration") < num(v, "metadata", "generation") {
			t.Errorf("read before the controller acted: generation %d, observed %d", num(v, "metadata", "generation"), num(v, "status", "observedGeneration"))
		}
		reads := 0
		poll(t, 60*time.Second, "verify-restart-success", func(ctx context.Context) (bool, string) {
			reads++
			v := w.root(ctx, "deployment", "web")
			if !verifyHolds(t, v) {
				return false, fmt.Sprintf("status %v", v["status"])
			}
			// Read after the root: the new pods were ready when it said so.
			if rs := w.currentReplicaSet("web"); rs.Annotations[rbk8s.RevisionAnnotation] != "2" || rs.Status.ReadyReplicas < 3 {
				t.Errorf("the root reported %d of 3 ready while ReplicaSet %s (revision %s) had %d ready pods",
					num(v, "status", "readyReplicas"), rs.Name, rs.Annotations[rbk8s.RevisionAnnotation], rs.Status.ReadyReplicas)
			}
			return true, ""
		})
		t.Logf("restart: the check held after %d reads", reads)
	})

	// With the node cordoned the new pod cannot start: the raw status
	// still says 3 of 3 ready (the old pods), the root says 0.
	t.Run("restart whose pods cannot start", func(t *testing.T) {
		w.t = t
		w.setUnschedulable(true)
		uncordoned := false
		t.Cleanup(func() {
			if !uncordoned {
				w.setUnschedulable(false)
			}
		})
		w.restart("web")
		poll(t, 30*time.Second, "revision 3 has a Pending pod", func(ctx context.Context) (bool, string) {
			rs := w.currentReplicaSet("web")
			return rs.Annotations[rbk8s.RevisionAnnotation] == "3" && rs.Status.Replicas >= 1, fmt.Sprintf("revision %s replicas %d", rs.Annotations[rbk8s.RevisionAnnotation], rs.Status.Replicas)
		})
		raw := w.raw("web")
		v := w.root(ctx, "deployment", "web")
		if raw.Status.ReadyReplicas != 3 {
			t.Fatalf("raw readyReplicas = %d; the old pods should still be ready", raw.Status.ReadyReplicas)
		}
		if verifyHolds(t, v) || num(v, "status", "readyReplicas") != 0 || v["status"].(map[string]any)["settled"] != false {
			t.Errorf("deployment root mid-rollout: status %v; want 0 ready, not settled", v["status"])
		}
		h := w.root(ctx, "healthcheck", "web")
		if h["failed"] != false || h["healthy"] != false || !strings.HasPrefix(h["reason"].(string), "rollout in progress") {
			t.Errorf("healthcheck mid-rollout = %v; want neither failed nor healthy", h)
		}

		w.setUnschedulable(false)
		uncordoned = true
		poll(t, 60*time.Second, "verify-restart-success after uncordoning", func(ctx context.Context) (bool, string) {
			v := w.root(ctx, "deployment", "web")
			return verifyHolds(t, v) && v["status"].(map[string]any)["settled"] == true, fmt.Sprintf("status %v", v["status"])
		})
		if rs := w.currentReplicaSet("web"); rs.Status.ReadyReplicas != 3 {
			t.Errorf("revision 3 has %d ready pods", rs.Status.ReadyReplicas)
		}
	})
}

// healthUntil polls the healthcheck root until it is failed or healthy,
// as want says, and returns it.
func (w *settledWorld) healthUntil(name, want string) map[string]any {
	w.t.Helper()
	var h map[string]any
	poll(w.t, 60*time.Second, "healthcheck of "+name+" "+want, func(ctx context.Context) (bool, string) {
		h = w.root(ctx, "healthcheck", name)
		return h[want] == true, fmt.Sprint(h)
	})
	return h
}

func TestHealthcheckE2E(t *testing.T) {
	c := k8s.Start(t)
	w := newSettledWorld(t, c, "health")
	ctx := t.Context()

	good := deployment(w.ns, "good", 3)
	// Its pods can never be scheduled: no node has this label.
	never := deployment(w.ns, "never", 2)
	never.Spec.Template.Spec.NodeSelector = map[string]string{"runbookbot.test/no-such-node": "true"}
	w.create(good)
	w.create(never)

	t.Run("good", func(t *testing.T) {
		w.t = t
		h := w.healthUntil("good", "healthy")
		if h["failed"] != false || h["reason"] != "3 of 3 replicas ready" || h["readyReplicas"] != int64(3) || h["desiredReplicas"] != int64(3) || h["settled"] != true {
			t.Errorf("healthcheck = %v", h)
		}
	})

	// By now good's pods have started; never's exist but cannot.
	t.Run("pods never ready", func(t *testing.T) {
		w.t = t
		poll(t, 30*time.Second, "never's pods Pending", func(ctx context.Context) (bool, string) {
			pods, err := w.cs.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=never"})
			if err != nil {
				return false, err.Error()
			}
			for _, p := range pods.Items {
				if p.Status.Phase != corev1.PodPending {
					t.Fatalf("pod %s is %s", p.Name, p.Status.Phase)
				}
			}
			return len(pods.Items) == 2, fmt.Sprintf("%d pods", len(pods.Items))
		})
		h := w.root(ctx, "healthcheck", "never")
		if h["failed"] != true || h["healthy"] != false || h["readyReplicas"] != int64(0) || h["desiredReplicas"] != int64(2) {
			t.Errorf("healthcheck = %v", h)
		}
		t.Logf("never: %s", h["reason"])
	})

	// A readiness probe starts failing on one pod of the good deployment
	// (kwok made it Ready once; its status is set back to not ready).
	t.Run("a pod turns not ready", func(t *testing.T) {
		w.t = t
		pods, err := w.cs.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=good"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("pods of good: %v, %v", pods, err)
		}
		p := pods.Items[0]
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.PodReady || p.Status.Conditions[i].Type == corev1.ContainersReady {
				p.Status.Conditions[i].Status = corev1.ConditionFalse
			}
		}
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Ready = false
		}
		if _, err := w.cs.CoreV1().Pods(w.ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		var h map[string]any
		poll(t, 30*time.Second, "good failed", func(ctx context.Context) (bool, string) {
			h = w.root(ctx, "healthcheck", "good")
			return h["failed"] == true, fmt.Sprint(h)
		})
		if h["reason"] != "2 of 3 replicas ready" || h["readyReplicas"] != int64(2) {
			t.Errorf("healthcheck = %v", h)
		}
	})

	// A rollout of a working deployment to pods that cannot start: old
	// pods keep it available, so only the progress deadline says it is
	// stuck.
	t.Run("rollout stuck", func(t *testing.T) {
		w.t = t
		stuck := deployment(w.ns, "stuck", 2)
		stuck.Spec.ProgressDeadlineSeconds = int32p(2)
		w.create(stuck)
		w.healthUntil("stuck", "healthy")
		patch := `{"spec":{"template":{"spec":{"nodeSelector":{"runbookbot.test/no-such-node":"true"}}}}}`
		if _, err := w.cs.AppsV1().Deployments(w.ns).Patch(ctx, "stuck", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		h := w.healthUntil("stuck", "failed")
		if !strings.HasPrefix(h["reason"].(string), "rollout stuck: ProgressDeadlineExceeded") {
			t.Errorf("healthcheck = %v", h)
		}
	})

	t.Run("missing", func(t *testing.T) {
		w.t = t
		h := w.root(ctx, "healthcheck", "nope")
		if h["failed"] != true || h["reason"] != `deployment "nope" in namespace "health" not found` {
			t.Errorf("healthcheck = %v", h)
		}
	})
}
