package drift

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

const runbook = `apiVersion: runbooks/v1
kind: Runbook
metadata:
  name: web-restart
  version: "1.0.0"
trigger:
  type: alert
  alertName: WebDown
parameters:
  - name: namespace
    type: string
    default: shop
  - name: deployment
    type: string
    default: web
  - name: podName
    type: string
preconditions:
  - name: web-ready
    type: kubernetes
    action: checkDeploymentReady
    params:
      namespace: "{{ namespace }}"
      deployment: "{{ deployment }}"
steps:
  - name: health
    type: http
    action: get
    params:
      url: "HEALTH_URL"
  - name: gc
    type: http
    action: post
    params:
      url: "http://127.0.0.1:1/admin/gc?token=x"
  - name: errors-low
    type: wait
    action: until
    params:
      condition: "metrics.errorRate < 5"
      timeout: 60s
  - name: restart
    type: kubernetes
    action: rolloutRestart
    params:
      namespace: "{{ namespace }}"
      deployment: "{{ podName | extractDeployment }}"
approvals:
  - name: restart-approval
    trigger:
      step: restart
    workflow:
      type: sequential
      timeout: 15m
      approvers:
        - type: role
          value: oncall-primary
        - type: team
          value: ghost-team
`

const mappings = `mappings:
  - alert: WebDown
    runbook: web-restart
    conditions:
      - namespace: "payments"
    parameters:
      namespace: "{{ $labels.namespace }}"
`

const rbac = `roles:
  - name: runbook-operator
    permissions: [runbooks:execute, approvals:respond]
assignments:
  - role: runbook-operator
    subjects: [{group: oncall-primary}]
groups:
  - name: oncall-primary
    users: [U1]
`

type fakeMetrics map[string]bool

func (f fakeMetrics) HasSeries(_ context.Context, name string, _ map[string]any) (bool, error) {
	return f[name], nil
}

func load(t *testing.T, healthURL string) *engine.Catalog {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", strings.Replace(runbook, "HEALTH_URL", healthURL, 1))
	write("mappings.yaml", mappings)
	write("rbac.yaml", rbac)
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), dir)
	for _, d := range diags {
		// lint reports the undefined approver group too (the runbook still
		// loads); drift is what notices it when rbac.yaml changes later.
		if !strings.Contains(d.Message, "is not a group or role of the RBAC config") {
			t.Fatalf("load: %v", d)
		}
	}
	return cat
}

func cluster(objs ...any) *KubeCluster {
	var ros []any
	ros = append(ros, objs...)
	cs := fake.NewClientset()
	for _, o := range ros {
		switch x := o.(type) {
		case *corev1.Namespace:
			_, _ = cs.CoreV1().Namespaces().Create(context.Background(), x, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, _ = cs.AppsV1().Deployments(x.Namespace).Create(context.Background(), x, metav1.CreateOptions{})
		}
	}
	return &KubeCluster{Client: func(string) (kubernetes.Interface, error) { return cs, nil }}
}

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
func dep(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func TestFindingsNameFileAndLine(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer down.Close()
	cat := load(t, down.URL+"/healthz")
	c := &Checker{Cluster: cluster(ns("shop"), ns("payments"), dep("payments", "web")), Metrics: fakeMetrics{}}
	rep := c.Check(context.Background(), cat)
	var got []string
	for _, f := range rep.Findings {
		got = append(got, filepath.Base(f.File)+":"+strconv.Itoa(f.Line)+" "+string(f.Kind)+" "+f.Message)
	}
	want := []string{
		`web.yaml:24 deployment deployment "web" in namespace "shop" does not exist`,
		`web.yaml:30 http health endpoint ` + down.URL + `/healthz answers 503`,
		`web.yaml:40 metric metric errorRate: its query returns no series`,
		`web.yaml:58 approver approver team "ghost-team": no group in `,
	}
	if len(got) != len(want) {
		t.Fatalf("findings:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("finding %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
	if c := rep.Counts()["web-restart"]; c["deployment"] != 1 || c["namespace"] != 0 || c["secret"] != 0 {
		t.Errorf("counts = %v", c)
	}
	// The restart's deployment comes from the alert's pod: not checked,
	// and said so; the POST is never sent.
	found := false
	for _, u := range rep.Unchecked {
		if u.Kind == KindDeployment && u.Line == 47 {
			found = true
		}
	}
	if !found {
		t.Errorf("unchecked = %+v, want the restart's deployment", rep.Unchecked)
	}
}

func TestMappingLabelsNameTargets(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	cat := load(t, up.URL)
	// shop/web exists, the mapping's namespace payments does not.
	c := &Checker{Cluster: cluster(ns("shop"), dep("shop", "web")), Metrics: fakeMetrics{"errorRate": true}}
	rep := c.Check(context.Background(), cat)
	var msgs []string
	for _, f := range rep.Findings {
		msgs = append(msgs, f.String())
	}
	all := strings.Join(msgs, "\n")
	if !strings.Contains(all, `namespace "payments" does not exist (with the values of alert WebDown (`) {
		t.Errorf("the mapping's namespace is not reported:\n%s", all)
	}
	if strings.Contains(all, `"shop"`) || strings.Contains(all, "http") || strings.Contains(all, "metric") {
		t.Errorf("targets that exist were reported:\n%s", all)
	}
}

func TestDeletedAndRecreatedDeployment(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	cat := load(t, up.URL)
	cs := fake.NewClientset(ns("shop"), ns("payments"), dep("shop", "web"), dep("payments", "web"))
	c := &Checker{Cluster: &KubeCluster{Client: func(string) (kubernetes.Interface, error) { return cs, nil }}, Metrics: fakeMetrics{"errorRate": true}}
	deployments := func() int { return c.Check(context.Background(), cat).Counts()["web-restart"]["deployment"] }
	if n := deployments(); n != 0 {
		t.Fatalf("drift before the delete: %d", n)
	}
	if err := cs.AppsV1().Deployments("shop").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := deployments(); n != 1 {
		t.Errorf("after the delete: %d deployment findings, want 1", n)
	}
	if _, err := cs.AppsV1().Deployments("shop").Create(context.Background(), dep("shop", "web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := deployments(); n != 0 {
		t.Errorf("after recreating it: %d", n)
	}
}
