package kubernetes_test

import (
	"errors"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

func TestRolloutRestart(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	e.clock.Advance(90 * time.Second)
	res := e.mustRun("rolloutRestart", map[string]any{"namespace": "staging", "deployment": "api-server"}, nil)

	d := e.getDeployment("staging", "api-server")
	want := "2026-01-30T10:01:30Z"
	if got := d.Spec.Template.Annotations[kubernetes.RestartedAtAnnotation]; got != want {
		t.Errorf("restartedAt = %q, want %q (the call clock, RFC3339)", got, want)
	}
	if d.Spec.Template.Spec.Containers[0].Image != "img:v4" {
		t.Error("restart changed more than the annotation")
	}
	if res.State["previousRevision"] != 4 {
		t.Errorf("state previousRevision = %#v, want int 4", res.State["previousRevision"])
	}
	before := res.Output["deployment"].(map[string]any)
	if path(before, "spec", "replicas") != int64(3) || path(before, "status", "readyReplicas") != int64(3) {
		t.Errorf("output deployment = %v", before)
	}
	if path(before, "spec", "template", "metadata", "annotations") != nil {
		t.Error("output deployment is not the object before the restart")
	}
	if res.Output["restartedAt"] != want {
		t.Errorf("output restartedAt = %v", res.Output["restartedAt"])
	}
}

func TestRolloutRestartPatchFailureKeepsOutput(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	e.failOn("patch", "deployments", errors.New("connection refused"))
	res, err := e.run("rolloutRestart", map[string]any{"namespace": "staging", "deployment": "api-server"}, nil)
	wantErr(t, err, `cannot restart deployment "api-server" in namespace "staging"`, "connection refused")
	if path(res.Output["deployment"].(map[string]any), "spec", "replicas") != int64(3) || res.State["previousRevision"] != 4 {
		t.Errorf("on failure: output = %v, state = %v", res.Output, res.State)
	}
}

func TestRolloutRestartPaused(t *testing.T) {
	d := deployment("staging", "paused", 1, 1, 1)
	d.Spec.Paused = true
	e := newEnv(t, kubernetes.Deps{}, d)
	_, err := e.run("rolloutRestart", map[string]any{"namespace": "staging", "deployment": "paused"}, nil)
	wantErr(t, err, "is paused", "rollout resume")
	if len(e.writes()) != 0 {
		t.Errorf("writes = %v", e.writes())
	}
}

func TestRolloutUndo(t *testing.T) {
	cases := []struct {
		name       string
		toRevision any
		wantImage  string
		wantRev    int64
	}{
		{"previous (nil)", nil, "img:v3", 3},
		{"previous (empty)", "", "img:v3", 3},
		{"previous (0)", 0, "img:v3", 3},
		{"revision 2", 2, "img:v2", 2},
		{"revision 2 as float", 2.0, "img:v2", 2},
		{"revision 2 as string", "2", "img:v2", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
			res := e.mustRun("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "api-server", "toRevision": tc.toRevision}, nil)
			d := e.getDeployment("staging", "api-server")
			if got := d.Spec.Template.Spec.Containers[0].Image; got != tc.wantImage {
				t.Errorf("image = %s, want %s", got, tc.wantImage)
			}
			if _, ok := d.Spec.Template.Labels["pod-template-hash"]; ok {
				t.Error("pod-template-hash label copied into the deployment")
			}
			if d.Spec.Template.Labels["app"] != "api-server" {
				t.Errorf("template labels = %v", d.Spec.Template.Labels)
			}
			if d.Annotations["kubernetes.io/change-cause"] == "" || d.Annotations[kubernetes.RevisionAnnotation] != "4" {
				t.Errorf("annotations = %v (want change-cause copied, revision kept)", d.Annotations)
			}
			if res.Output["toRevision"] != tc.wantRev || res.Output["fromRevision"] != int64(4) || res.Output["skipped"] != false {
				t.Errorf("output = %v", res.Output)
			}
		})
	}
}

// After a restart whose patch failed, undo to the saved revision finds the
// template unchanged: a successful no-op, as kubectl reports it.
func TestRolloutUndoToCurrentIsNoop(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	res := e.mustRun("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "api-server", "toRevision": 4}, nil)
	if res.Output["skipped"] != true || len(e.writes()) != 0 {
		t.Errorf("output = %v, writes = %v", res.Output, e.writes())
	}
}

// The seed's flow: restart, then undo to state.previousRevision.
func TestRolloutUndoAfterRestart(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	res := e.mustRun("rolloutRestart", map[string]any{"namespace": "staging", "deployment": "api-server"}, nil)
	e.mustRun("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "api-server", "toRevision": res.State["previousRevision"]}, nil)
	d := e.getDeployment("staging", "api-server")
	if _, ok := d.Spec.Template.Annotations[kubernetes.RestartedAtAnnotation]; ok {
		t.Errorf("undo kept the restart annotation: %v", d.Spec.Template.Annotations)
	}
}

func TestRolloutUndoErrors(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	_, err := e.run("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "api-server", "toRevision": 9}, nil)
	wantErr(t, err, "has no revision 9", "revisions: 2, 3, 4")
	_, err = e.run("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "api-server", "toRevision": "latest"}, nil)
	wantErr(t, err, "toRevision", "whole number")

	// Only one revision: nothing to go back to.
	d := deployment("staging", "fresh", 1, 1, 1)
	e = newEnv(t, kubernetes.Deps{}, d, replicaSet(d, 1))
	_, err = e.run("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "fresh"}, nil)
	wantErr(t, err, "no revision before 1", "revisions: 1")

	// ReplicaSets of another deployment with matching labels do not count.
	other := deployment("staging", "fresh", 1, 1, 1)
	other.UID = "uid-someone-else"
	e = newEnv(t, kubernetes.Deps{}, d, replicaSet(other, 1))
	_, err = e.run("rolloutUndo", map[string]any{"namespace": "staging", "deployment": "fresh"}, nil)
	wantErr(t, err, "no rollout history")
}
