package kubernetes_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

var t0 = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// deployment is a Deployment "name" in ns at revision rev running image
// img:v<rev>, with the given replica counts.
func deployment(ns, name string, replicas, ready int32, rev int) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID("uid-" + name), Generation: 2,
			Annotations: map[string]string{kubernetes.RevisionAnnotation: strconv.Itoa(rev)},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(name, rev),
		},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: ready, AvailableReplicas: ready,
		},
	}
}

func podTemplate(name string, rev int) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: fmt.Sprintf("img:v%d", rev)},
			{Name: "sidecar", Image: "proxy:1"},
		}},
	}
}

// replicaSet is the ReplicaSet of d's revision rev, as the deployment
// controller names and labels it.
func replicaSet(d *appsv1.Deployment, rev int) *appsv1.ReplicaSet {
	hash := fmt.Sprintf("h%07d", rev)
	tmpl := podTemplate(d.Name, rev)
	tmpl.Labels["pod-template-hash"] = hash
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: d.Namespace, Name: d.Name + "-" + hash, UID: types.UID("uid-rs-" + hash),
			Labels:          map[string]string{"app": d.Name, "pod-template-hash": hash},
			Annotations:     map[string]string{kubernetes.RevisionAnnotation: strconv.Itoa(rev), "kubernetes.io/change-cause": fmt.Sprintf("deploy v%d", rev)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr(true)}},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Template: tmpl},
	}
}

// pod is a running pod owned by rs (or by nothing when rs is nil).
func pod(ns, name string, rs *appsv1.ReplicaSet) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{
			{Name: "app", Image: "img"}, {Name: "sidecar", Image: "proxy:1"},
		}},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", RestartCount: 2}, {Name: "sidecar", RestartCount: 1}},
		},
	}
	if rs != nil {
		for k, v := range rs.Spec.Template.Labels {
			p.Labels[k] = v
		}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr(true)}}
	}
	return p
}

// apiServer is the seed's api-server: 3 replicas at revision 4, with the
// ReplicaSets of revisions 2-4 and the alerting pod.
func apiServer(ns string) []runtime.Object {
	d := deployment(ns, "api-server", 3, 3, 4)
	rs4 := replicaSet(d, 4)
	return []runtime.Object{d, replicaSet(d, 2), replicaSet(d, 3), rs4, pod(ns, "api-server-abc123", rs4)}
}

// env is a registry with the kubernetes integration on a fake clientset.
type env struct {
	t      *testing.T
	reg    *engine.Registry
	kube   *kubernetes.Integration
	client *fake.Clientset
	clock  *enginetest.FakeClock
}

func newEnv(t *testing.T, deps kubernetes.Deps, objs ...runtime.Object) *env {
	t.Helper()
	client := fake.NewClientset(objs...)
	deps.Client = client
	clock := enginetest.NewFakeClock(t0)
	if deps.Clock == nil {
		deps.Clock = clock
	}
	reg := engine.NewRegistry()
	kube := kubernetes.New(deps)
	kube.Register(reg)
	return &env{t: t, reg: reg, kube: kube, client: client, clock: clock}
}

// call builds a Call as the engine does (vars are the execution params).
func (e *env) call(action string, params, vars map[string]any) *engine.Call {
	if vars == nil {
		vars = map[string]any{}
	}
	return &engine.Call{ExecutionID: "exec-1", Step: &engine.Step{Name: "step", Type: "kubernetes", Action: action},
		Params: params, Vars: vars, Clock: e.clock}
}

// run runs an action with a test deadline.
func (e *env) run(action string, params, vars map[string]any) (engine.Result, error) {
	e.t.Helper()
	spec, ok := e.reg.Lookup("kubernetes", action)
	if !ok {
		e.t.Fatalf("kubernetes.%s is not registered", action)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return spec.Run.Run(ctx, e.call(action, params, vars))
}

func (e *env) mustRun(action string, params, vars map[string]any) engine.Result {
	e.t.Helper()
	res, err := e.run(action, params, vars)
	if err != nil {
		e.t.Fatalf("%s: %v", action, err)
	}
	return res
}

func (e *env) getDeployment(ns, name string) *appsv1.Deployment {
	e.t.Helper()
	d, err := e.client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// writes lists the mutating API calls made so far.
func (e *env) writes() []string {
	var out []string
	for _, a := range e.client.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

// failOn makes verb on resource fail with err.
func (e *env) failOn(verb, resource string, err error) {
	e.client.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, err
	})
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

// path reads a nested value from an object map.
func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
