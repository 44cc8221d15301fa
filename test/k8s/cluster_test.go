package k8s_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/runbookbot/runbookbot/test/k8s"
)

// poll calls cond every 100 ms until it returns true or timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := ""
	for {
		ok, state := cond(ctx)
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func int32p(n int32) *int32 { return &n }

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	sel := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.invalid/" + name + ":1",
				}}},
			},
		},
	}
}

// rolledOut reports whether the deployment's newest generation is fully
// rolled out, the way `kubectl rollout status` judges it.
func rolledOut(ctx context.Context, cs kubernetes.Interface, ns, name string) (bool, string) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	want := *d.Spec.Replicas
	s := d.Status
	state := fmt.Sprintf("gen=%d observed=%d replicas=%d updated=%d ready=%d available=%d",
		d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas)
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want &&
		s.ReadyReplicas == want && s.AvailableReplicas == want, state
}

func replicaSets(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, app string) []appsv1.ReplicaSet {
	t.Helper()
	l, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": app}.String()})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func TestCluster(t *testing.T) {
	c := k8s.Start(t)
	cs := c.Clientset()
	ctx := t.Context()
	t.Logf("startup took %s", c.StartupTime())

	// The kubeconfig file is usable on its own.
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	fromFile, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fromFile.Discovery().ServerVersion()
	if err != nil || v.GitVersion != k8s.Version {
		t.Fatalf("server version = %+v, %v; want %s", v, err, k8s.Version)
	}

	const ns, name = "default", "web"
	began := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(ns, name, 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "3 ready replicas", func(ctx context.Context) (bool, string) {
		return rolledOut(ctx, cs, ns, name)
	})
	t.Logf("3 replicas ready in %s", time.Since(began).Round(time.Millisecond))
	rs := replicaSets(ctx, t, cs, ns, name)
	if len(rs) != 1 {
		t.Fatalf("%d ReplicaSets, want 1", len(rs))
	}
	first := rs[0].Name

	// Rollout restart, as kubectl does it.
	began = time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		time.Now().Format(time.RFC3339))
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var second string
	poll(t, 60*time.Second, "restart rolled out on a new ReplicaSet", func(ctx context.Context) (bool, string) {
		if ok, state := rolledOut(ctx, cs, ns, name); !ok {
			return false, state
		}
		for _, r := range replicaSets(ctx, t, cs, ns, name) {
			if r.Name != first && r.Status.ReadyReplicas == 3 && *r.Spec.Replicas == 3 {
				second = r.Name
			}
			if r.Name == first && *r.Spec.Replicas != 0 {
				return false, "old ReplicaSet not scaled down"
			}
		}
		return second != "", "no new ready ReplicaSet"
	})
	t.Logf("restart: ReplicaSet %s -> %s in %s", first, second, time.Since(began).Round(time.Millisecond))

	// pods/exec: kwok runs the command on this host, in ExecDir.
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods: %v (%d)", err, len(pods.Items))
	}
	pod := pods.Items[0].Name
	stdout, stderr, err := c.Exec(ctx, ns, pod, "app", "echo", "hello")
	if err != nil {
		t.Fatalf("exec: %v (stderr %q)", err, stderr)
	}
	if stdout != "hello\n" {
		t.Fatalf("exec stdout = %q, want %q (stderr %q)", stdout, "hello\n", stderr)
	}
	// The working directory is the one given to kwok.
	stdout, _, err = c.Exec(ctx, ns, pod, "app", "pwd")
	if err != nil {
		t.Fatalf("exec pwd: %v", err)
	}
	if want, _ := filepath.EvalSymlinks(c.ExecDir()); strings.TrimSpace(stdout) != want && strings.TrimSpace(stdout) != c.ExecDir() {
		t.Errorf("exec ran in %q, want %q", strings.TrimSpace(stdout), c.ExecDir())
	}
	// A failing command reports its exit status.
	if _, _, err := c.Exec(ctx, ns, pod, "app", "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "3") {
		t.Errorf("exit 3: err = %v, want an exit-code error", err)
	}
	t.Logf("exec through pods/exec works (pod %s)", pod)

	// Namespaces made with Cluster.Namespace accept pods at once.
	c.Namespace(t, "staging")
	if _, err := cs.AppsV1().Deployments("staging").Create(ctx, deployment("staging", "api", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "1 ready replica in staging", func(ctx context.Context) (bool, string) {
		return rolledOut(ctx, cs, "staging", "api")
	})
}

// Without binaries Start skips (or fails under RUNBOOKBOT_REQUIRE_K8S=1).
func TestMissingBinariesSkip(t *testing.T) {
	t.Setenv("RUNBOOKBOT_K8S_BIN", t.TempDir())
	t.Setenv("RUNBOOKBOT_REQUIRE_K8S", "")
	ok := t.Run("skips", func(t *testing.T) {
		st := &skipRecorder{TB: t}
		func() {
			defer func() { recover() }()
			k8s.Start(st)
		}()
		if !st.skipped || !strings.Contains(st.msg, "build.sh") {
			t.Errorf("skipped=%v msg=%q", st.skipped, st.msg)
		}
	})
	if !ok {
		return
	}
	t.Setenv("RUNBOOKBOT_REQUIRE_K8S", "1")
	st := &skipRecorder{TB: t}
	func() {
		defer func() { recover() }()
		k8s.Start(st)
	}()
	if !st.fatal || !strings.Contains(st.msg, "build.sh") {
		t.Errorf("with RUNBOOKBOT_REQUIRE_K8S=1: fatal=%v msg=%q", st.fatal, st.msg)
	}
}

// skipRecorder records Skip and Fatal instead of ending the test.
type skipRecorder struct {
	testing.TB
	skipped, fatal bool
	msg            string
}

type stop struct{}

func (s *skipRecorder) Helper()                   {}
func (s *skipRecorder) Skip(args ...any)          { s.skipped, s.msg = true, fmt.Sprint(args...); panic(stop{}) }
func (s *skipRecorder) Fatal(args ...any)         { s.fatal, s.msg = true, fmt.Sprint(args...); panic(stop{}) }
func (s *skipRecorder) Skipf(f string, a ...any)  { s.Skip(fmt.Sprintf(f, a...)) }
func (s *skipRecorder) Fatalf(f string, a ...any) { s.Fatal(fmt.Sprintf(f, a...)) }
