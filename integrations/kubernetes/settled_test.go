package kubernetes_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

// The seed's verify-restart-success condition.
const seedVerify = "deployment.status.readyReplicas == deployment.spec.replicas"

// midRollout is deployment "api" (3 replicas) just after a restart: the
// controller has created revision 5's ReplicaSet with one pod that is not
// ready yet, and revision 4's three pods are still ready.
func midRollout() (*appsv1.Deployment, []runtime.Object) {
	d := deployment("staging", "api", 3, 3, 5)
	d.Status.Replicas, d.Status.UpdatedReplicas = 4, 1
	old, cur := replicaSet(d, 4), replicaSet(d, 5)
	old.Status = appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
	cur.Status = appsv1.ReplicaSetStatus{Replicas: 1}
	return d, []runtime.Object{d, old, cur}
}

func evalCond(t *testing.T, expr string, env map[string]any) bool {
	t.Helper()
	cond, err := engine.CompileCondition(expr)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := cond.Eval(env)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return ok
}

func (e *env) resolveMap(root string, vars map[string]any) map[string]any {
	e.t.Helper()
	v, err := e.resolve(root, vars)
	if err != nil {
		e.t.Fatalf("%s root: %v", root, err)
	}
	return v.(map[string]any)
}

func (e *env) setReplicaSetStatus(name string, st appsv1.ReplicaSetStatus) {
	e.t.Helper()
	rs, err := e.client.AppsV1().ReplicaSets("staging").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	rs.Status = st
	if _, err := e.client.AppsV1().ReplicaSets("staging").UpdateStatus(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

var apiVars = map[string]any{"namespace": "staging", "deployment": "api"}

func TestDeploymentRootCountsOnlyTheCurrentRevision(t *testing.T) {
	d, objs := midRollout()
	e := newEnv(t, kubernetes.Deps{}, objs...)
	v := e.resolveMap("deployment", apiVars)
	st := v["status"].(map[string]any)
	if st["readyReplicas"] != int64(0) || st["availableReplicas"] != int64(0) || st["updatedReplicas"] != int64(1) || st["settled"] != false {
		t.Errorf("status mid-rollout = %v; want ready 0, available 0, updated 1 (revision 5 only), not settled", st)
	}
	if st["replicas"] != int64(4) || st["unavailableReplicas"] != int64(3) {
		t.Errorf("status mid-rollout = %v; want replicas 4 (every pod), unavailable 3", st)
	}
	if evalCond(t, seedVerify, map[string]any{"deployment": v}) {
		t.Error("verify-restart-success holds while only the previous revision's pods are ready")
	}

	// The new pods come up and the old ones go.
	e.setReplicaSetStatus(replicaSet(d, 5).Name, appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3})
	e.setReplicaSetStatus(replicaSet(d, 4).Name, appsv1.ReplicaSetStatus{})
	e.setStatus("staging", "api", func(s *appsv1.DeploymentStatus) {
		s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas = 3, 3, 3, 3
	})
	v = e.resolveMap("deployment", apiVars)
	if !evalCond(t, seedVerify+" && deployment.status.settled", map[string]any{"deployment": v}) {
		t.Errorf("after the rollout: status = %v", v["status"])
	}
}

func TestDeploymentRootUnchangedDeploymentReadsAsBefore(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	v := e.resolveMap("deployment", map[string]any{"namespace": "staging", "podName": "api-server-abc123"})
	got := e.mustRun("getDeployment", map[string]any{"namespace": "staging", "deployment": "api-server"}, nil).Output["deployment"]
	if !reflect.DeepEqual(v, got) {
		t.Errorf("deployment root = %v\nwant the Deployment as the API returns it: %v", v, got)
	}
	if path(v, "status", "settled") != true {
		t.Errorf("status.settled = %v, want true", path(v, "status", "settled"))
	}
	for _, a := range e.client.Actions() {
		if a.GetResource().Resource == "replicasets" && a.GetVerb() == "list" {
			t.Error("a settled Deployment's ReplicaSets were listed")
		}
	}
}

// changed is deployment "api" right after a change the controller has
// not acted on: generation 3, observed 2, the old pods all ready.
func changed() *appsv1.Deployment {
	d := deployment("staging", "api", 3, 3, 4)
	d.Generation = 3
	return d
}

// resolveAsync runs a root's resolver in the background.
func (e *env) resolveAsync(ctx context.Context, root string, vars map[string]any) <-chan resolved {
	done := make(chan resolved, 1)
	go func() {
		var v any
		var err error
		switch root {
		case "deployment":
			v, err = e.kube.ResolveDeployment(ctx, nil, vars)
		case "healthcheck":
			v, err = e.kube.ResolveHealthcheck(ctx, nil, vars)
		}
		done <- resolved{v, err}
	}()
	return done
}

type resolved struct {
	v   any
	err error
}

func waitResolved(t *testing.T, done <-chan resolved) resolved {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("resolver did not return")
		return resolved{}
	}
}

func TestDeploymentRootWaitsForTheController(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, changed(), replicaSet(changed(), 4))
	done := e.resolveAsync(context.Background(), "deployment", apiVars)
	e.parkAndAdvance(2, 100*time.Millisecond) // polled once: still generation 3 > 2
	e.park(2)
	select {
	case r := <-done:
		t.Fatalf("returned before the controller acted: %v, %v", r.v, r.err)
	default:
	}

	// The controller acts: revision 5 with one pod, not ready yet.
	d := e.getDeployment("staging", "api")
	d.Annotations[kubernetes.RevisionAnnotation] = "5"
	d.Spec.Template = podTemplate("api", 5)
	d.Status.ObservedGeneration, d.Status.Replicas, d.Status.UpdatedReplicas = 3, 4, 1
	if _, err := e.client.AppsV1().Deployments("staging").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cur := replicaSet(d, 5)
	cur.Status = appsv1.ReplicaSetStatus{Replicas: 1}
	if _, err := e.client.AppsV1().ReplicaSets("staging").Create(context.Background(), cur, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(100 * time.Millisecond)
	r := waitResolved(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	v := r.v.(map[string]any)
	if path(v, "status", "observedGeneration") != int64(3) || path(v, "status", "readyReplicas") != int64(0) {
		t.Errorf("status = %v; want observedGeneration 3 and no ready pod of revision 5", v["status"])
	}
	if evalCond(t, seedVerify, map[string]any{"deployment": v}) {
		t.Error("verify-restart-success holds right after the change")
	}
	if n := e.clock.Timers(); n != 0 {
		t.Errorf("%d timers left behind", n)
	}
}

func TestDeploymentRootControllerNeverActs(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{LookupTimeout: 5 * time.Second}, changed())
	done := e.resolveAsync(context.Background(), "deployment", apiVars)
	e.parkAndAdvance(2, 5*time.Second)
	r := waitResolved(t, done)
	wantErr(t, r.err, `deployment "api" in namespace "staging"`, "not acted on the change within 5s", "generation 3, observed 2", "kube-controller-manager")

	// The caller's deadline ends the wait with the caller's reason.
	ctx, cancel := context.WithCancelCause(context.Background())
	done = e.resolveAsync(ctx, "deployment", apiVars)
	e.park(2)
	stop := context.DeadlineExceeded
	cancel(stop)
	wantErr(t, waitResolved(t, done).err, stop.Error())
}

func TestCheckDeploymentReadyCountsOnlyTheCurrentRevision(t *testing.T) {
	_, objs := midRollout()
	e := newEnv(t, kubernetes.Deps{}, objs...)
	res, err := e.run("checkDeploymentReady", map[string]any{"namespace": "staging", "deployment": "api", "minReadyReplicas": 2}, nil)
	wantErr(t, err, "Insufficient ready replicas: 0 < 2", "3 more ready replicas are of an older revision")
	if res.Output["readyReplicas"] != int64(0) {
		t.Errorf("readyReplicas = %v, want 0", res.Output["readyReplicas"])
	}
}

func TestHealthcheck(t *testing.T) {
	stuck := deployment("staging", "api", 3, 2, 5)
	stuck.Status.Replicas, stuck.Status.UpdatedReplicas = 4, 1
	stuck.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False", Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "api-h0000005" has timed out progressing.`}}

	degraded := deployment("staging", "api", 3, 2, 5)

	unavailable, objs := midRollout()
	unavailable.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: "False", Reason: "MinimumReplicasUnavailable"}}

	progressing, progressingObjs := midRollout()
	progressing.Status.Conditions = []appsv1.DeploymentCondition{
		{Type: appsv1.DeploymentAvailable, Status: "True", Reason: "MinimumReplicasAvailable"},
		{Type: appsv1.DeploymentProgressing, Status: "True", Reason: "ReplicaSetUpdated"},
	}

	for _, tc := range []struct {
		name            string
		objs            []runtime.Object
		vars            map[string]any
		failed, healthy bool
		reason          string
		ready, desired  int64
		deployment      string
	}{
		{"healthy", apiServer("staging"), map[string]any{"namespace": "staging", "podName": "api-server-abc123"},
			false, true, "3 of 3 replicas ready", 3, 3, "api-server"},
		{"replicas not ready", []runtime.Object{degraded}, apiVars,
			true, false, "2 of 3 replicas ready", 2, 3, "api"},
		{"progress deadline exceeded", []runtime.Object{stuck, replicaSet(stuck, 5)}, apiVars,
			true, false, `rollout stuck: ProgressDeadlineExceeded (ReplicaSet "api-h0000005" has timed out progressing.)`, 0, 3, "api"},
		{"not available", objs, apiVars,
			true, false, "not available: 0 of 3 replicas ready (MinimumReplicasUnavailable)", 0, 3, "api"},
		{"rollout in progress", progressingObjs, apiVars,
			false, false, "rollout in progress: 1 of 3 replicas updated, 0 ready, 0 available (3 ready replicas of older revisions not counted)", 0, 3, "api"},
		{"missing", apiServer("staging"), map[string]any{"namespace": "staging", "deployment": "api"},
			true, false, `deployment "api" in namespace "staging" not found`, 0, 0, "api"},
		{"pod and deployment gone", apiServer("staging"), map[string]any{"namespace": "staging", "podName": "ghost-5f7d8c9b4-abcde"},
			true, false, `cannot find the deployment of pod "ghost-5f7d8c9b4-abcde": the pod is not in namespace "staging" and there is no deployment "ghost" there; set params.deployment`, 0, 0, "ghost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, kubernetes.Deps{}, tc.objs...)
			got := e.resolveMap("healthcheck", tc.vars)
			want := map[string]any{"failed": tc.failed, "healthy": tc.healthy, "reason": tc.reason,
				"readyReplicas": tc.ready, "desiredReplicas": tc.desired, "deployment": tc.deployment}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s = %#v, want %#v", k, got[k], w)
				}
			}
			// What the seed's rollback trigger reads.
			if fired := evalCond(t, "healthcheck.failed", map[string]any{"healthcheck": got}); fired != tc.failed {
				t.Errorf("healthcheck.failed evaluated to %v", fired)
			}
		})
	}
}

func TestHealthcheckCannotCheck(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	e.failOn("get", "deployments", errConnRefused)
	_, err := e.resolve("healthcheck", map[string]any{"namespace": "staging", "deployment": "api-server"})
	wantErr(t, err, `cannot get deployment "api-server" in namespace "staging"`, "connection refused")

	e = newEnv(t, kubernetes.Deps{DenyNamespaces: []string{"kube-system"}}, apiServer("staging")...)
	for _, tc := range []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"deployment": "api-server"}, "needs a namespace"},
		{map[string]any{"namespace": "staging"}, "no deployment or podName"},
		{map[string]any{"namespace": "kube-system", "deployment": "coredns"}, "protected"},
	} {
		_, err := e.resolve("healthcheck", tc.vars)
		wantErr(t, err, tc.want)
	}
	if !e.reg.Answers("healthcheck") {
		t.Error("Register did not add the healthcheck root")
	}
}

var errConnRefused = connRefused{}

type connRefused struct{}

func (connRefused) Error() string { return "dial tcp 10.0.0.1:443: connect: connection refused" }
