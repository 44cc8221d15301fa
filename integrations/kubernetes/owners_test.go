package kubernetes_test

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

func TestDeniedNamespaceRefused(t *testing.T) {
	fx := &fakeExec{}
	deps := kubernetes.Deps{DenyNamespaces: []string{"production-critical", "kube-*"}, Exec: fx.exec}
	e := newEnv(t, deps, apiServer("production-critical")...)
	params := map[string]map[string]any{
		"checkDeploymentReady": {"deployment": "api-server"},
		"rolloutRestart":       {"deployment": "api-server"},
		"rolloutUndo":          {"deployment": "api-server"},
		"scale":                {"deployment": "api-server", "replicas": 1},
		"execCommand":          {"pod": "api-server-abc123", "command": "ls"},
		"getDeployment":        {"deployment": "api-server"},
		"listPods":             {},
		"deletePod":            {"pod": "api-server-abc123"},
		"waitForRollout":       {"deployment": "api-server"},
	}
	for action, p := range params {
		p["namespace"] = "production-critical"
		_, err := e.run(action, p, nil)
		wantErr(t, err, `namespace "production-critical" is protected`)
	}
	_, err := e.run("listPods", map[string]any{"namespace": "kube-system"}, nil)
	wantErr(t, err, `namespace "kube-system" is protected`)
	if n := len(e.client.Actions()); n != 0 || len(fx.calls) != 0 {
		t.Errorf("denied namespace reached the cluster: %d API calls, %d execs", n, len(fx.calls))
	}
	_, err = e.resolve("deployment", map[string]any{"namespace": "production-critical", "deployment": "api-server"})
	wantErr(t, err, "is protected")
}

func TestAllowedNamespaces(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{AllowNamespaces: []string{"staging", "team-*"}}, apiServer("prod")...)
	_, err := e.run("getDeployment", map[string]any{"namespace": "prod", "deployment": "api-server"}, nil)
	wantErr(t, err, `namespace "prod" is not one runbookbot may act on`, "allowed: staging, team-*")
	_, err = e.run("listPods", map[string]any{"namespace": "team-a"}, nil)
	if err != nil {
		t.Errorf("team-a refused: %v", err)
	}
	_, err = e.run("listPods", map[string]any{"namespace": ""}, nil)
	wantErr(t, err, "namespace is empty")
}

// filter runs the registry's extractDeployment filter.
func (e *env) filter(v any, args ...any) (any, error) {
	return e.reg.Filters()["extractDeployment"](context.Background(), v, args)
}

func (e *env) resolve(root string, vars map[string]any) (any, error) {
	switch root {
	case "deployment":
		return e.kube.ResolveDeployment(context.Background(), nil, vars)
	case "pod":
		return e.kube.ResolvePod(context.Background(), nil, vars)
	case "healthcheck":
		return e.kube.ResolveHealthcheck(context.Background(), nil, vars)
	}
	e.t.Fatalf("no resolver %s", root)
	return nil, nil
}

func TestExtractDeploymentFilter(t *testing.T) {
	objs := apiServer("staging")
	// A pod whose name does not follow the Deployment pattern still
	// resolves through its owners.
	d := deployment("staging", "worker", 1, 1, 7)
	rs := replicaSet(d, 7)
	objs = append(objs, d, rs, pod("staging", "odd-name", rs))
	e := newEnv(t, kubernetes.Deps{}, objs...)

	for _, tc := range []struct {
		pod  string
		args []any
		want string
	}{
		{"api-server-abc123", nil, "api-server"},
		{"api-server-abc123", []any{"staging"}, "api-server"},
		{"odd-name", nil, "worker"},
		{"odd-name", []any{"staging"}, "worker"},
		// Unknown pods fall back to trimming the name.
		{"billing-7d4b9c6f8-x2x7q", nil, "billing"},
		{"billing-7d4b9c6f8-x2x7q", []any{"staging"}, "billing"},
		{"", nil, ""},
	} {
		got, err := e.filter(tc.pod, tc.args...)
		if err != nil || got != tc.want {
			t.Errorf("extractDeployment(%q, %v) = %v, %v; want %q", tc.pod, tc.args, got, err, tc.want)
		}
	}
	if _, err := e.filter("odd-name", "a", "b"); err == nil {
		t.Error("two arguments accepted")
	}
}

func TestExtractDeploymentRemembersDeletedPods(t *testing.T) {
	d := deployment("staging", "worker", 1, 1, 7)
	rs := replicaSet(d, 7)
	e := newEnv(t, kubernetes.Deps{}, d, rs, pod("staging", "odd-name", rs))
	if got, _ := e.filter("odd-name"); got != "worker" {
		t.Fatalf("first lookup = %v", got)
	}
	// The restart replaced the pod; rollback steps still find the owner.
	if err := e.client.CoreV1().Pods("staging").Delete(context.Background(), "odd-name", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.filter("odd-name"); got != "worker" {
		t.Errorf("after deletion = %v, want worker", got)
	}
	if got, _ := e.filter("odd-name", "staging"); got != "worker" {
		t.Errorf("after deletion, with namespace = %v, want worker", got)
	}
}

func TestExtractDeploymentNotADeployment(t *testing.T) {
	p := pod("staging", "redis-0", nil)
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "redis", UID: "u", Controller: ptr(true)}}
	e := newEnv(t, kubernetes.Deps{}, p, pod("staging", "bare", nil))
	_, err := e.filter("redis-0")
	wantErr(t, err, `managed by StatefulSet "redis", not by a Deployment`)
	_, err = e.filter("bare", "staging")
	wantErr(t, err, "has no controller")
}

func TestExtractDeploymentAmbiguousFallsBack(t *testing.T) {
	a, b := apiServer("staging"), apiServer("prod")
	e := newEnv(t, kubernetes.Deps{}, append(a, b...)...)
	if got, err := e.filter("api-server-abc123"); err != nil || got != "api-server" {
		t.Errorf("ambiguous pod = %v, %v; want the trimmed name", got, err)
	}
	// Pods in denied namespaces do not make a name ambiguous.
	d := deployment("staging", "api-server", 3, 3, 4)
	rs := replicaSet(d, 4)
	e = newEnv(t, kubernetes.Deps{DenyNamespaces: []string{"prod"}}, d, rs, pod("staging", "odd-name", rs), pod("prod", "odd-name", nil))
	if got, err := e.filter("odd-name"); err != nil || got != "api-server" {
		t.Errorf("odd-name = %v, %v; want api-server", got, err)
	}
}

func TestExtractDeploymentClusterDown(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	e.failOn("list", "pods", errors.New("connection refused"))
	e.failOn("get", "pods", errors.New("connection refused"))
	if got, err := e.filter("api-server-abc123"); err != nil || got != "api-server" {
		t.Errorf("cluster down = %v, %v; want the trimmed name", got, err)
	}
}

func TestDeploymentResolver(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	for _, vars := range []map[string]any{
		{"namespace": "staging", "podName": "api-server-abc123"},
		{"namespace": "staging", "deployment": "api-server"},
		{"namespace": "staging", "deployment": map[string]any{"metadata": map[string]any{"name": "api-server"}}},
	} {
		v, err := e.resolve("deployment", vars)
		if err != nil {
			t.Fatalf("vars %v: %v", vars, err)
		}
		// The seed's verify-restart-success condition.
		cond, err := engine.CompileCondition("deployment.status.readyReplicas == deployment.spec.replicas")
		if err != nil {
			t.Fatal(err)
		}
		ok, err := cond.Eval(map[string]any{"deployment": v})
		if err != nil || !ok {
			t.Errorf("vars %v: condition = %v, %v", vars, ok, err)
		}
	}
	// The seed's verify-rollback condition, with state saved through JSON.
	v, _ := e.resolve("deployment", map[string]any{"namespace": "staging", "podName": "api-server-abc123"})
	cond, _ := engine.CompileCondition("deployment.status.readyReplicas == state.previousReplicaCount")
	if ok, err := cond.Eval(map[string]any{"deployment": v, "state": map[string]any{"previousReplicaCount": 3.0}}); err != nil || !ok {
		t.Errorf("verify-rollback condition = %v, %v", ok, err)
	}

	_, err := e.resolve("deployment", map[string]any{"podName": "api-server-abc123"})
	wantErr(t, err, "needs a namespace")
	_, err = e.resolve("deployment", map[string]any{"namespace": "staging"})
	wantErr(t, err, "no deployment or podName")
	_, err = e.resolve("deployment", map[string]any{"namespace": "staging", "podName": "ghost-5f7d8c9b4-abcde"})
	wantErr(t, err, `the pod is not in namespace "staging"`, `no deployment "ghost"`)
}

func TestPodResolver(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	v, err := e.resolve("pod", map[string]any{"namespace": "staging", "podName": "api-server-abc123"})
	if err != nil {
		t.Fatal(err)
	}
	cond, _ := engine.CompileCondition("pod.status.phase == 'Running' && pod.spec.nodeName == 'node-1'")
	if ok, err := cond.Eval(map[string]any{"pod": v}); err != nil || !ok {
		t.Errorf("pod condition = %v, %v", ok, err)
	}
	_, err = e.resolve("pod", map[string]any{"namespace": "staging", "podName": "nope"})
	wantErr(t, err, `pod "nope" in namespace "staging" not found`)
}

func TestContexts(t *testing.T) {
	east := fake.NewClientset(apiServer("staging")...)
	west := fake.NewClientset([]runtime.Object{deployment("staging", "api-server", 5, 5, 1)}...)
	reg := engine.NewRegistry()
	kubernetes.Register(reg, kubernetes.Deps{Contexts: func(name string) (kubernetes.Cluster, error) {
		switch name {
		case "", "east":
			return kubernetes.Cluster{Client: east}, nil
		case "west":
			return kubernetes.Cluster{Client: west}, nil
		}
		return kubernetes.Cluster{}, errors.New("no such context in kubeconfig")
	}})
	e := &env{t: t, reg: reg, client: east, clock: enginetest.NewFakeClock(t0)}
	res := e.mustRun("getDeployment", map[string]any{"namespace": "staging", "deployment": "api-server", "kubeContext": "west"}, nil)
	if path(res.Output["deployment"].(map[string]any), "spec", "replicas") != int64(5) {
		t.Errorf("west deployment = %v", res.Output["deployment"])
	}
	_, err := e.run("getDeployment", map[string]any{"namespace": "staging", "deployment": "api-server", "kubeContext": "mars"}, nil)
	wantErr(t, err, `kubeContext "mars"`, "no such context")

	single := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	_, err = single.run("getDeployment", map[string]any{"namespace": "staging", "deployment": "api-server", "kubeContext": "west"}, nil)
	wantErr(t, err, `kubeContext "west"`, "single cluster")
}
