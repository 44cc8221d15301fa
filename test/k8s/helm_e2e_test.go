package k8s_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	rbk8s "github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/test/k8s"
)

// applier applies rendered objects server-side, as `kubectl apply
// --server-side` (and Helm 4) do.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, c *k8s.Cluster) *applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Clientset().Discovery()))}
}

func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset() // a CRD may have just been established
		if m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if o.GetNamespace() != "" {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	force := true
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "runbookbot-helm-e2e", Force: &force})
	if err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// serviceMonitorCRD stands in for prometheus-operator's CRD: same group,
// kind and scope, any content.
var serviceMonitorCRD = &unstructured.Unstructured{Object: map[string]any{
	"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
	"metadata": map[string]any{"name": "servicemonitors.monitoring.coreos.com"},
	"spec": map[string]any{
		"group": "monitoring.coreos.com", "scope": "Namespaced",
		"names": map[string]any{"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
		"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
			"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
	},
}}

// The chart, rendered with Helm's library, applies server-side to a real
// API server in three shapes, and its pods run; then its ServiceAccount can
// do what every kubernetes action needs and nothing more.
func TestHelmChartOnRealCluster(t *testing.T) {
	c := k8s.Start(t)
	cs := c.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ap := newApplier(t, c)
	if err := ap.apply(ctx, serviceMonitorCRD); err != nil {
		t.Fatal(err)
	}
	// A volume for the embedded store's claim (no provisioner here).
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "bot-data"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:              "manual",
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: c.ExecDir()}},
		},
	}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slack := map[string]any{"botToken": "xoxb-e2e", "appToken": "xapp-e2e"}
	installs := []struct {
		ns       string
		values   map[string]any
		replicas map[string]int32 // Deployment → replicas that must be ready
	}{
		{"bot-embedded", map[string]any{"slack": slack, "persistence": map[string]any{"storageClass": "manual"}},
			map[string]int32{"rb-runbookbot": 1}},
		{"bot-redis", map[string]any{"slack": slack, "redis": map[string]any{"enabled": true}, "serviceMonitor": map[string]any{"enabled": true}},
			map[string]int32{"rb-runbookbot": 2, "rb-runbookbot-redis": 1}},
		{"bot-scoped", map[string]any{"slack": slack, "persistence": map[string]any{"enabled": false},
			"rbac": map[string]any{"allowedNamespaces": []any{"team-a"}}},
			map[string]int32{"rb-runbookbot": 1}},
	}
	for _, ns := range []string{"team-a", "team-b", "bot-embedded", "bot-redis", "bot-scoped"} {
		c.Namespace(t, ns)
	}
	for _, in := range installs {
		r := mustRender(t, "rb", in.ns, in.values)
		for _, o := range r.objects {
			if err := ap.apply(ctx, o); err != nil {
				t.Fatalf("%s: %v", in.ns, err)
			}
		}
		if in.values["serviceMonitor"] != nil {
			if len(r.ofKind("ServiceMonitor")) != 1 {
				t.Errorf("%s: no ServiceMonitor rendered", in.ns)
			}
		}
	}
	for _, in := range installs {
		for name, want := range in.replicas {
			poll(t, 90*time.Second, in.ns+"/"+name+" ready", func(ctx context.Context) (bool, string) {
				ok, state := rolledOut(ctx, cs, in.ns, name)
				if ok {
					d, _ := cs.AppsV1().Deployments(in.ns).Get(ctx, name, metav1.GetOptions{})
					if *d.Spec.Replicas != want {
						t.Fatalf("%s/%s has %d replicas, want %d", in.ns, name, *d.Spec.Replicas, want)
					}
				}
				return ok, state
			})
		}
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims("bot-embedded").Get(ctx, "rb-runbookbot-data", metav1.GetOptions{})
	if err != nil || pvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("the embedded store's claim: %v %v", pvc.Status.Phase, err)
	}

	// The fixture the actions act on.
	if _, err := cs.AppsV1().Deployments("team-a").Create(ctx, deployment("team-a", "api", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "team-a/api ready", func(ctx context.Context) (bool, string) { return rolledOut(ctx, cs, "team-a", "api") })

	want := actionPermissions(t, c, "bot-embedded", false)
	t.Logf("the kubernetes actions call: %s", strings.Join(want, " "))
	granted := extraGrants(t, cs, "bot-embedded", "rb-runbookbot", "team-a")
	if !slices.Equal(granted, want) {
		t.Errorf("the chart's ClusterRole grants more than the actions need, or less:\n granted %v\n needed  %v", granted, want)
	}
	if got := extraGrants(t, cs, "bot-embedded", "rb-runbookbot", ""); len(got) != 0 {
		t.Errorf("cluster-scoped grants beyond any authenticated user's: %v", got)
	}

	scoped := actionPermissions(t, c, "bot-scoped", true)
	if !slices.Equal(scoped, want) {
		t.Errorf("scoped install needed %v, cluster-wide %v", scoped, want)
	}
	if got := extraGrants(t, cs, "bot-scoped", "rb-runbookbot", "team-a"); !slices.Equal(got, want) {
		t.Errorf("scoped to team-a, granted in team-a %v, want %v", got, want)
	}
	if got := extraGrants(t, cs, "bot-scoped", "rb-runbookbot", "team-b"); len(got) != 0 {
		t.Errorf("scoped to team-a, still granted in team-b: %v", got)
	}
}

// call is one API request the bot's ServiceAccount made.
type call struct {
	perm   string // group/resource[/subresource]:verb
	allNS  bool   // a list across namespaces
	status int
}

// recorder notes every request that passes through the transports of a
// client config (each transport built from it is wrapped).
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) wrap(rt http.RoundTripper) http.RoundTripper { return recording{rt, r} }

// recording is one wrapped transport.
type recording struct {
	rt  http.RoundTripper
	rec *recorder
}

func (w recording) RoundTrip(req *http.Request) (*http.Response, error) {
	r := w.rec
	resp, err := w.rt.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	group, res, ns, name, sub := parsePath(req.URL)
	if res != "" {
		verbs := []string{verbOf(req, name)}
		if sub == "exec" && req.Method == http.MethodGet {
			// A WebSocket upgrade is authorized for get, and (feature
			// AuthorizePodWebsocketUpgradeCreatePermission, on since 1.35)
			// for create too.
			verbs = append(verbs, "create")
		}
		full := res
		if sub != "" {
			full += "/" + sub
		}
		r.mu.Lock()
		for _, v := range verbs {
			r.calls = append(r.calls, call{perm: group + "/" + full + ":" + v, allNS: ns == "" && name == "", status: status})
		}
		r.mu.Unlock()
	}
	return resp, err
}

// parsePath reads /api/v1/... and /apis/GROUP/VERSION/... paths.
func parsePath(u *url.URL) (group, res, ns, name, sub string) {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		group, parts = parts[1], parts[3:]
	default:
		return "", "", "", "", ""
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		ns, parts = parts[1], parts[2:]
	}
	res = parts[0]
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		sub = parts[2]
	}
	return group, res, ns, name, sub
}

func verbOf(req *http.Request, name string) string {
	switch req.Method {
	case http.MethodGet:
		if name != "" {
			return "get"
		}
		if req.URL.Query().Get("watch") == "true" {
			return "watch"
		}
		return "list"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if name != "" {
			return "delete"
		}
		return "deletecollection"
	}
	return strings.ToLower(req.Method)
}

// saConfig is a client config holding a token of the release's
// ServiceAccount, as the bot's pod has.
func saConfig(t *testing.T, c *k8s.Cluster, ns, sa string) *rest.Config {
	t.Helper()
	exp := int64(600)
	tok, err := c.Clientset().CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := c.RESTConfig()
	return &rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}, BearerToken: tok.Status.Token, QPS: 100, Burst: 200}
}

// actionPermissions runs every kubernetes action, resolver and the
// extractDeployment filter as the release's ServiceAccount against
// team-a/api, fails on any error, and returns the permissions the
// successful requests used. Every kubernetes action a shipped runbook uses
// must be among those run.
func actionPermissions(t *testing.T, c *k8s.Cluster, releaseNS string, scoped bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := saConfig(t, c, releaseNS, "rb-runbookbot")
	rec := &recorder{}
	cfg.WrapTransport = rec.wrap
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deps := rbk8s.Deps{Client: client, Config: cfg, LookupTimeout: 20 * time.Second}
	if scoped {
		deps.AllowNamespaces = []string{"team-a"}
	}
	integ := rbk8s.New(deps)
	reg := engine.NewRegistry()
	integ.Register(reg)

	admin := c.Clientset()
	pods := func() []string {
		l, err := admin.CoreV1().Pods("team-a").List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				names = append(names, p.Name)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			t.Fatal("no running api pod")
		}
		return names
	}
	vars := map[string]any{"namespace": "team-a", "deployment": "api"}
	ran := map[string]bool{}
	act := func(name string, params map[string]any) {
		t.Helper()
		spec, ok := reg.Lookup(rbk8s.StepType, name)
		if !ok {
			t.Fatalf("no kubernetes action %s", name)
		}
		_, err := spec.Run.Run(ctx, &engine.Call{ExecutionID: "rbac-e2e", Step: &engine.Step{Name: name, Type: rbk8s.StepType, Action: name},
			Phase: engine.PhaseStep, Params: params, Vars: vars, Clock: engine.SystemClock{}, Started: time.Now(), Redact: func(s string) string { return s }})
		if err != nil {
			t.Fatalf("%s as the chart's ServiceAccount (%s): %v", name, releaseNS, err)
		}
		ran[name] = true
	}
	with := func(kv ...any) map[string]any {
		m := map[string]any{"namespace": "team-a"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	pod := pods()[0]
	act("getDeployment", with("deployment", "api"))
	act("checkDeploymentReady", with("deployment", "api", "minReadyReplicas", 1))
	act("checkDeploymentReady", with("podName", pod))
	act("listPods", with("labelSelector", "app=api"))
	act("execCommand", with("pod", pod, "command", []any{"echo", "hello"}))
	act("rolloutRestart", with("deployment", "api"))
	act("waitForRollout", with("deployment", "api", "timeout", "90s", "pollInterval", "200ms"))
	act("scale", with("deployment", "api", "replicas", 3))
	// rolloutUndo reads then updates without retrying a conflict: let the
	// controller settle first (see the report on issue 13).
	act("waitForRollout", with("deployment", "api", "timeout", "90s", "pollInterval", "200ms"))
	act("rolloutUndo", with("deployment", "api"))
	act("waitForRollout", with("deployment", "api", "timeout", "90s", "pollInterval", "200ms"))
	act("deletePod", with("pod", pods()[0]))

	pod = pods()[0]
	for root, f := range map[string]engine.ResolveFunc{"deployment": integ.ResolveDeployment, "healthcheck": integ.ResolveHealthcheck} {
		if _, err := f(ctx, nil, vars); err != nil {
			t.Fatalf("the %s root as the chart's ServiceAccount: %v", root, err)
		}
	}
	if _, err := integ.ResolvePod(ctx, nil, map[string]any{"namespace": "team-a", "podName": pod}); err != nil {
		t.Fatalf("the pod root as the chart's ServiceAccount: %v", err)
	}
	// The owner lookup via the pod's namespace, then without one (a list
	// across namespaces, which a scoped install may not make: the filter
	// falls back to trimming the name).
	for _, args := range [][]any{{"team-a"}, nil} {
		got, err := integ.ExtractDeployment(ctx, pod, args)
		if err != nil || got != "api" {
			t.Fatalf("extractDeployment%v = %v, %v", args, got, err)
		}
	}

	// Every kubernetes action the shipped runbooks use was run.
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../../runbooks")
	if len(diags) > 0 {
		t.Fatalf("shipped runbooks: %v", diags)
	}
	for _, rb := range cat.Runbooks {
		for _, ps := range rb.AllSteps() {
			if ps.Step.Type == rbk8s.StepType && !ran[ps.Step.Action] {
				t.Errorf("%s uses kubernetes.%s, which this test does not run as the ServiceAccount; add it", rb.Name(), ps.Step.Action)
			}
		}
	}
	for _, spec := range integ.Specs() {
		if !ran[spec.Action] {
			t.Errorf("kubernetes.%s is not run as the ServiceAccount; add it", spec.Action)
		}
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	need := map[string]bool{}
	for _, cl := range rec.calls {
		switch {
		case cl.status < 400 && cl.status > 0:
			need[cl.perm] = true
		case cl.status == http.StatusForbidden && scoped && cl.allNS && cl.perm == "/pods:list":
			// expected: the scoped install lists pods in its namespaces only
		default:
			t.Errorf("%s answered %d", cl.perm, cl.status)
		}
	}
	out := make([]string, 0, len(need))
	for p := range need {
		out = append(out, p)
	}
	sort.Strings(out)
	if !slices.Contains(out, "/pods/exec:create") {
		t.Errorf("execCommand's request was not seen: %v", out)
	}
	return out
}

// extraGrants lists, as group/resource[/subresource]:verb, what the
// release's ServiceAccount may do in ns ("" for cluster-scoped resources)
// beyond what any ServiceAccount may: every resource and verb the API
// server serves is asked with a SubjectAccessReview.
func extraGrants(t *testing.T, cs kubernetes.Interface, releaseNS, sa, ns string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lists, err := cs.Discovery().ServerPreferredResources()
	if err != nil && !apierrors.IsNotFound(err) {
		t.Logf("discovery (partial): %v", err)
	}
	type ask struct {
		gr   schema.GroupResource
		sub  string
		verb string
	}
	var asks []ask
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if r.Namespaced != (ns != "") {
				continue
			}
			res, sub, _ := strings.Cut(r.Name, "/")
			for _, v := range r.Verbs {
				asks = append(asks, ask{schema.GroupResource{Group: gv.Group, Resource: res}, sub, v})
			}
		}
	}
	if len(asks) < 50 {
		t.Fatalf("discovery found only %d resource verbs", len(asks))
	}
	// Discovery may leave subresources out: ask for the ones that grant
	// reach into pods and workloads by name.
	if ns != "" {
		for _, p := range []string{"/pods/exec", "/pods/attach", "/pods/portforward", "/pods/proxy", "/pods/log", "/pods/eviction",
			"/pods/ephemeralcontainers", "/services/proxy", "/serviceaccounts/token", "apps/deployments/scale", "apps/replicasets/scale", "apps/statefulsets/scale"} {
			group, rest, _ := strings.Cut(p, "/")
			res, sub, _ := strings.Cut(rest, "/")
			for _, v := range []string{"get", "create", "update", "patch"} {
				asks = append(asks, ask{schema.GroupResource{Group: group, Resource: res}, sub, v})
			}
		}
	}
	allowed := func(user, userNS string, a ask) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + userNS + ":" + user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + userNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: a.verb,
				Group: a.gr.Group, Resource: a.gr.Resource, Subresource: a.sub},
		}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("SubjectAccessReview: %v", err)
			return false
		}
		return got.Status.Allowed
	}
	var mu sync.Mutex
	var out []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, a := range asks {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if !allowed(sa, releaseNS, a) || allowed("nobody", releaseNS, a) {
				return
			}
			p := a.gr.Group + "/" + a.gr.Resource
			if a.sub != "" {
				p += "/" + a.sub
			}
			mu.Lock()
			out = append(out, p+":"+a.verb)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Strings(out)
	return slices.Compact(out)
}
