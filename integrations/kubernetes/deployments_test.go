package kubernetes_test

import (
	"context"
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

func TestSpecs(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{})
	mutating := map[string]bool{"rolloutRestart": true, "rolloutUndo": true, "scale": true, "execCommand": true, "deletePod": true}
	for _, name := range []string{"checkDeploymentReady", "rolloutRestart", "rolloutUndo", "scale", "execCommand", "getDeployment", "listPods", "deletePod", "waitForRollout"} {
		spec, ok := e.reg.Lookup("kubernetes", name)
		if !ok {
			t.Errorf("%s not registered", name)
			continue
		}
		if spec.Mutating != mutating[name] {
			t.Errorf("%s Mutating = %v", name, spec.Mutating)
		}
		if spec.Estimate == nil || spec.Estimate(&engine.Step{}) <= 0 {
			t.Errorf("%s has no estimate", name)
		}
		if len(spec.Required) == 0 || spec.Required[0] != "namespace" || len(spec.Outputs) == 0 {
			t.Errorf("%s Required = %v, Outputs = %v", name, spec.Required, spec.Outputs)
		}
	}
	spec, _ := e.reg.Lookup("kubernetes", "rolloutRestart")
	if len(spec.SavesState) != 1 || spec.SavesState[0] != "previousRevision" || spec.Outputs[0] != "deployment" {
		t.Errorf("rolloutRestart SavesState = %v, Outputs = %v", spec.SavesState, spec.Outputs)
	}
	spec, _ = e.reg.Lookup("kubernetes", "scale")
	bad := &engine.Step{Params: engine.Params{Values: map[string]any{"replicas": "three"}}}
	if err := spec.Validate(bad); err == nil {
		t.Error("scale accepted replicas: three at lint time")
	}
	templated := &engine.Step{Params: engine.Params{Values: map[string]any{"replicas": "{{ state.previousReplicaCount }}"}}}
	if err := spec.Validate(templated); err != nil {
		t.Errorf("scale rejected a templated replicas: %v", err)
	}
	spec, _ = e.reg.Lookup("kubernetes", "waitForRollout")
	if d := spec.Estimate(&engine.Step{Params: engine.Params{Values: map[string]any{"timeout": "90s"}}}); d != 90*time.Second {
		t.Errorf("waitForRollout estimate = %s, want 90s", d)
	}
}

func TestCheckDeploymentReady(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	res := e.mustRun("checkDeploymentReady", map[string]any{"namespace": "staging", "deployment": "api-server", "minReadyReplicas": 2}, nil)
	if res.Output["readyReplicas"] != int64(3) || path(res.Output["deployment"].(map[string]any), "metadata", "name") != "api-server" {
		t.Errorf("output = %v", res.Output)
	}

	// The seed's precondition: no deployment param, found from podName.
	res = e.mustRun("checkDeploymentReady", map[string]any{"namespace": "staging", "minReadyReplicas": 2}, map[string]any{"podName": "api-server-abc123"})
	if path(res.Output["deployment"].(map[string]any), "metadata", "name") != "api-server" {
		t.Errorf("derived deployment = %v", path(res.Output["deployment"].(map[string]any), "metadata", "name"))
	}

	_, err := e.run("checkDeploymentReady", map[string]any{"namespace": "staging", "deployment": "api-server", "minReadyReplicas": "4"}, nil)
	wantErr(t, err, "Insufficient ready replicas: 3 < 4", `"api-server"`)

	_, err = e.run("checkDeploymentReady", map[string]any{"namespace": "staging"}, nil)
	wantErr(t, err, "no deployment given", "podName")

	_, err = e.run("checkDeploymentReady", map[string]any{"namespace": "staging", "deployment": "nope"}, nil)
	wantErr(t, err, `deployment "nope" in namespace "staging" not found`)

	_, err = e.run("checkDeploymentReady", map[string]any{"namespace": "staging", "deployment": "api-server", "minReadyReplicas": 1.5}, nil)
	wantErr(t, err, "minReadyReplicas", "whole number")
}

func TestCheckDeploymentReadyZeroReady(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, deployment("staging", "api", 3, 0, 1))
	res, err := e.run("checkDeploymentReady", map[string]any{"namespace": "staging", "deployment": "api", "minReadyReplicas": 2.0}, nil)
	wantErr(t, err, "Insufficient ready replicas: 0 < 2")
	// Zero counters are present, so conditions can compare them.
	if got := path(res.Output["deployment"].(map[string]any), "status", "readyReplicas"); got != int64(0) {
		t.Errorf("status.readyReplicas = %#v, want int64(0)", got)
	}
}

func TestGetDeployment(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	res := e.mustRun("getDeployment", map[string]any{"namespace": "staging", "deployment": "api-server"}, nil)
	d := res.Output["deployment"].(map[string]any)
	if path(d, "spec", "replicas") != int64(3) || path(d, "status", "readyReplicas") != int64(3) || d["kind"] != "Deployment" {
		t.Errorf("deployment map = %v", d)
	}
	if path(d, "metadata", "managedFields") != nil {
		t.Error("managedFields not stripped")
	}
}

func TestScale(t *testing.T) {
	for _, replicas := range []any{5, int64(5), 5.0, "5", " 5 "} {
		e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
		res := e.mustRun("scale", map[string]any{"namespace": "staging", "deployment": "api-server", "replicas": replicas}, nil)
		if res.Output["previousReplicas"] != int64(3) || res.Output["replicas"] != int64(5) || res.Output["changed"] != true {
			t.Errorf("replicas %#v: output = %v", replicas, res.Output)
		}
		if got := *e.getDeployment("staging", "api-server").Spec.Replicas; got != 5 {
			t.Errorf("replicas %#v: spec.replicas = %d, want 5", replicas, got)
		}
	}

	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	res := e.mustRun("scale", map[string]any{"namespace": "staging", "deployment": "api-server", "replicas": 3}, nil)
	if res.Output["changed"] != false || len(e.writes()) != 0 {
		t.Errorf("same count: output = %v, writes = %v", res.Output, e.writes())
	}
	for _, bad := range []any{nil, "", "many", -1, 2.5, []any{1}} {
		_, err := e.run("scale", map[string]any{"namespace": "staging", "deployment": "api-server", "replicas": bad}, nil)
		wantErr(t, err, "replicas")
	}
	_, err := e.run("scale", map[string]any{"namespace": "staging", "deployment": "ghost", "replicas": 1}, nil)
	wantErr(t, err, `deployment "ghost" in namespace "staging" not found`)
}

func TestScaleForbidden(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	e.failOn("patch", "deployments", apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "api-server", errors.New("RBAC says no")))
	res, err := e.run("scale", map[string]any{"namespace": "staging", "deployment": "api-server", "replicas": 1}, nil)
	wantErr(t, err, "not allowed to scale", "RBAC")
	if res.Output["previousReplicas"] != int64(3) {
		t.Errorf("output = %v", res.Output)
	}
}

// rollingDeployment is mid-rollout: 1 of 3 replicas updated.
func rollingDeployment() *appsv1.Deployment {
	d := deployment("staging", "api", 3, 2, 5)
	d.Status.UpdatedReplicas = 1
	d.Status.Replicas = 4
	return d
}

func (e *env) setStatus(ns, name string, f func(*appsv1.DeploymentStatus)) {
	e.t.Helper()
	d := e.getDeployment(ns, name)
	f(&d.Status)
	if _, err := e.client.AppsV1().Deployments(ns).UpdateStatus(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) startAsync(action string, params map[string]any) <-chan error {
	spec, _ := e.reg.Lookup("kubernetes", action)
	done := make(chan error, 1)
	go func() {
		_, err := spec.Run.Run(context.Background(), e.call(action, params, nil))
		done <- err
	}()
	return done
}

// park waits until the action under test has set n timers on the clock.
func (e *env) park(n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.WaitTimers(ctx, n); err != nil {
		e.t.Fatalf("waiting for %d timers: %v", n, err)
	}
}

func (e *env) parkAndAdvance(n int, d time.Duration) {
	e.t.Helper()
	e.park(n)
	e.clock.Advance(d)
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("action did not finish")
		return nil
	}
}

func TestWaitForRollout(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, rollingDeployment())
	done := e.startAsync("waitForRollout", map[string]any{"namespace": "staging", "deployment": "api", "timeout": "2m", "pollInterval": "10s"})
	e.parkAndAdvance(2, 10*time.Second) // first poll: still rolling
	e.park(2)                           // second poll: still rolling
	e.setStatus("staging", "api", func(s *appsv1.DeploymentStatus) {
		s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas = 3, 3, 3, 3
	})
	e.clock.Advance(10 * time.Second)
	if err := waitDone(t, done); err != nil {
		t.Fatalf("waitForRollout: %v", err)
	}
}

func TestWaitForRolloutTimeout(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, rollingDeployment())
	done := e.startAsync("waitForRollout", map[string]any{"namespace": "staging", "deployment": "api", "timeout": "30s", "pollInterval": "10s"})
	for i := 0; i < 3; i++ {
		e.parkAndAdvance(2, 10*time.Second)
	}
	wantErr(t, waitDone(t, done), `deployment "api" in namespace "staging" did not finish rolling out within 30s`, "1 of 3 replicas updated")
}

func TestWaitForRolloutProgressDeadline(t *testing.T) {
	d := rollingDeployment()
	d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False", Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "api-x" has timed out progressing.`}}
	e := newEnv(t, kubernetes.Deps{}, d)
	_, err := e.run("waitForRollout", map[string]any{"namespace": "staging", "deployment": "api"}, nil)
	wantErr(t, err, "exceeded its progress deadline", "timed out progressing")
}

func TestWaitForRolloutHonoursContext(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, rollingDeployment())
	spec, _ := e.reg.Lookup("kubernetes", "waitForRollout")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := spec.Run.Run(ctx, e.call("waitForRollout", map[string]any{"namespace": "staging", "deployment": "api"}, nil))
		done <- err
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := e.clock.WaitTimers(wctx, 2); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("step timed out after 1m")
	cancel(stop)
	if err := waitDone(t, done); !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the context's cause", err)
	}
}
