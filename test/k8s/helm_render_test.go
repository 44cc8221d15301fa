package k8s_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

var updateManifests = flag.Bool("update", false, "rewrite deploy/kubernetes/runbookbot.yaml from the chart")

const (
	chartDir       = "../../deploy/helm/runbookbot"
	plainManifests = "../../deploy/kubernetes/runbookbot.yaml"
)

// rendered is a chart rendered for one release: its objects in the order
// they should be applied, and NOTES.txt.
type rendered struct {
	objects []*unstructured.Unstructured
	notes   string
}

// kinds lists what the chart makes, in the order Helm installs them.
var kindOrder = []string{"Namespace", "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim",
	"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment", "ServiceMonitor"}

// loadChart loads the chart once per test binary (Helm logs that it
// follows the runbooks symlink each time it loads it).
var loadChart = sync.OnceValues(func() (*chart.Chart, error) { return loader.LoadDir(chartDir) })

// renderChart renders deploy/helm/runbookbot with Helm's Go library, as
// `helm template NAME -n NS --set ...` would.
func renderChart(t testing.TB, release, ns string, values map[string]any) (*rendered, error) {
	t.Helper()
	chrt, err := loadChart()
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := util.ToRenderValues(chrt, values, common.ReleaseOptions{Name: release, Namespace: ns, Revision: 1, IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, err
	}
	out := &rendered{}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			out.notes = body
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(body), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s does not render to YAML: %v\n%s", name, err, body)
			}
			if len(m) == 0 {
				continue
			}
			out.objects = append(out.objects, &unstructured.Unstructured{Object: m})
		}
	}
	rank := func(kind string) int {
		for i, k := range kindOrder {
			if k == kind {
				return i
			}
		}
		t.Fatalf("the chart renders a %s; add it to kindOrder", kind)
		return 0
	}
	sort.SliceStable(out.objects, func(i, j int) bool {
		return rank(out.objects[i].GetKind()) < rank(out.objects[j].GetKind())
	})
	return out, nil
}

// mustRender is renderChart that fails the test on an error.
func mustRender(t testing.TB, release, ns string, values map[string]any) *rendered {
	t.Helper()
	r, err := renderChart(t, release, ns, values)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return r
}

// find returns the rendered object of kind and name, or nil.
func (r *rendered) find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// ofKind returns the rendered objects of kind.
func (r *rendered) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// plainValues are the values deploy/kubernetes/runbookbot.yaml is
// rendered with: release runbookbot in namespace runbookbot, the Slack
// tokens and the runbooks ConfigMap made by hand (so editing a runbook
// does not change the manifests).
var plainValues = map[string]any{
	"slack":    map[string]any{"existingSecret": "runbookbot-slack"},
	"runbooks": map[string]any{"existingConfigMap": "runbookbot-runbooks"},
}

const plainHeader = `# GENERATED from deploy/helm/runbookbot with its default values (release
# "runbookbot", namespace "runbookbot", embedded store on a PVC, 1 replica);
# do not edit: change the chart and run
#   go test ./test/k8s -run TestPlainManifestsAreTheChart -update
# To use it without Helm:
#   kubectl create namespace runbookbot
#   kubectl -n runbookbot create secret generic runbookbot-slack \
#     --from-literal=SLACK_BOT_TOKEN=xoxb-... --from-literal=SLACK_APP_TOKEN=xapp-...
#   kubectl -n runbookbot create configmap runbookbot-runbooks --from-file=runbooks/
#   kubectl apply --server-side -f deploy/kubernetes/runbookbot.yaml
`

// The plain manifests are the chart's output, so the two cannot drift.
func TestPlainManifestsAreTheChart(t *testing.T) {
	r := mustRender(t, "runbookbot", "runbookbot", plainValues)
	var buf bytes.Buffer
	buf.WriteString(plainHeader)
	for _, o := range r.objects {
		b, err := sigsyaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&buf, "---\n%s", b)
	}
	if *updateManifests {
		if err := os.MkdirAll(filepath.Dir(plainManifests), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(plainManifests, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(plainManifests)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from the chart's output; run go test ./test/k8s -run TestPlainManifestsAreTheChart -update", plainManifests)
	}
}

// What the chart makes for each kind of store, and what it refuses.
func TestChartStoresAndReplicas(t *testing.T) {
	cases := []struct {
		name     string
		values   map[string]any
		replicas int64
		pvc      bool
		redis    bool
		store    string // where RUNBOOKBOT_STORE comes from: a Secret's name
	}{
		{"embedded store", nil, 1, true, false, ""},
		{"the chart's Redis", map[string]any{"redis": map[string]any{"enabled": true}}, 2, false, true, "rb-runbookbot-store"},
		{"an external Redis URL", map[string]any{"redis": map[string]any{"url": "redis://:pw@redis.example:6379/2"}}, 2, false, false, "rb-runbookbot-store"},
		{"an external Redis Secret", map[string]any{"redis": map[string]any{"existingSecret": "my-redis"}}, 2, false, false, "my-redis"},
		{"three replicas with Redis", map[string]any{"replicaCount": 3, "redis": map[string]any{"enabled": true}}, 3, false, true, "rb-runbookbot-store"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mustRender(t, "rb", "ops", c.values)
			d := r.find("Deployment", "rb-runbookbot")
			if d == nil {
				t.Fatal("no Deployment rb-runbookbot")
			}
			got := nestedInt(d.Object, "spec", "replicas")
			if got != c.replicas {
				t.Errorf("replicas = %d, want %d", got, c.replicas)
			}
			if gotPVC := r.find("PersistentVolumeClaim", "rb-runbookbot-data") != nil; gotPVC != c.pvc {
				t.Errorf("data PVC rendered = %v, want %v", gotPVC, c.pvc)
			}
			if gotRedis := r.find("Deployment", "rb-runbookbot-redis") != nil; gotRedis != c.redis {
				t.Errorf("Redis Deployment rendered = %v, want %v", gotRedis, c.redis)
			}
			env := containerEnv(t, d)
			if c.store == "" {
				if env["RUNBOOKBOT_DATA_DIR"] != "/var/lib/runbookbot" || env["RUNBOOKBOT_STORE"] != "" {
					t.Errorf("embedded store env: %v", env)
				}
			} else if env["RUNBOOKBOT_STORE"] != "secret:"+c.store {
				t.Errorf("RUNBOOKBOT_STORE = %q, want from Secret %s", env["RUNBOOKBOT_STORE"], c.store)
			}
			for _, o := range r.objects {
				if o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != "ops" {
					t.Errorf("%s %s is in namespace %q, not the release's", o.GetKind(), o.GetName(), o.GetNamespace())
				}
			}
		})
	}
	_, err := renderChart(t, "rb", "ops", map[string]any{"replicaCount": 2})
	if err == nil || !strings.Contains(err.Error(), "needs Redis") {
		t.Errorf("2 replicas on the embedded store: err = %v, want a refusal naming Redis", err)
	}
}

// nestedInt reads a number from decoded YAML, which may hold it as int64
// or float64.
func nestedInt(obj map[string]any, fields ...string) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

// containerEnv maps the bot container's env names to values ("secret:NAME"
// for values from a Secret).
func containerEnv(t testing.TB, d *unstructured.Unstructured) map[string]string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		t.Fatal("no containers")
	}
	env := map[string]string{}
	list, _, _ := unstructured.NestedSlice(cs[0].(map[string]any), "env")
	for _, e := range list {
		m := e.(map[string]any)
		name, _ := m["name"].(string)
		if v, ok := m["value"].(string); ok {
			env[name] = v
		} else if s, ok, _ := unstructured.NestedString(m, "valueFrom", "secretKeyRef", "name"); ok {
			env[name] = "secret:" + s
		}
	}
	return env
}

// The runbooks ConfigMap holds the repository's runbooks folder, so a new
// runbook ships with the chart, and the probes, --listen and the NOTES'
// Alertmanager receiver URL line up with the Service.
func TestChartRunbooksProbesAndNotes(t *testing.T) {
	r := mustRender(t, "runbookbot", "ops", map[string]any{
		"runbooks": map[string]any{"files": map[string]any{"extra.yaml": "# extra\n", "example-echo.yaml": "# replaced\n"}},
	})
	cm := r.find("ConfigMap", "runbookbot-runbooks")
	if cm == nil {
		t.Fatal("no runbooks ConfigMap")
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	shipped, err := filepath.Glob("../../runbooks/*.yaml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("no shipped runbooks: %v", err)
	}
	for _, f := range shipped {
		name := filepath.Base(f)
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimRight(string(body), "\n")
		if name == "example-echo.yaml" {
			want = "# replaced"
		}
		if strings.TrimRight(data[name], "\n") != want {
			t.Errorf("ConfigMap key %s is not runbooks/%s", name, name)
		}
	}
	if data["extra.yaml"] != "# extra" {
		t.Errorf("extra file = %q", data["extra.yaml"])
	}
	d := r.find("Deployment", "runbookbot")
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	if strings.Join(args, " ") != "serve --listen :8080 --log-format json" {
		t.Errorf("args = %q", args)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %q, want %s", probe, got, path)
		}
	}
	if !strings.Contains(r.notes, "url: http://runbookbot.ops.svc:8080/alertmanager") {
		t.Errorf("NOTES do not give the Alertmanager receiver URL:\n%s", r.notes)
	}
	svc := r.find("Service", "runbookbot")
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	podLabels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
	for k, v := range sel {
		if podLabels[k] != v {
			t.Errorf("Service selector %s=%s does not match the bot's pods (%v)", k, v, podLabels)
		}
	}
}
