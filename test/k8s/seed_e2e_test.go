package k8s_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	rbhttp "github.com/runbookbot/runbookbot/integrations/http"
	rbk8s "github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/test/k8s"
)

const (
	seedNS     = "staging"
	seedDeploy = "api-server"
	seedToken  = "e2e-admin-token-CANARY"
)

type secretMap map[string]any

func (m secretMap) Secret(_ context.Context, name string) (any, error) {
	if v, ok := m[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("no secret %q", name)
}

// seedWorld runs the seed runbook through the engine with the real
// kubernetes integration on a real cluster (its deployment and healthcheck
// roots included). Only the metrics (memory stays at 92%, errors at 0.5%;
// test/prometheus_e2e_test.go reads them from a real Prometheus) and the GC
// endpoint (an httptest server every pod DNS name dials)
// are stand-ins. The engine's clock is fake, so the runbook's waits (60 s,
// 300 s) take no time and the change window always holds; one engine and
// clock serve every scenario so restartedAt stamps differ between runs.
type seedWorld struct {
	t      *testing.T
	c      *k8s.Cluster
	cs     kubernetes.Interface
	eng    *engine.Engine
	store  *enginetest.MemStore
	clock  *enginetest.FakeClock
	events chan engine.Event

	mu      sync.Mutex
	gcCalls []*http.Request
	notes   []engine.Notification
}

func newSeedWorld(t *testing.T, c *k8s.Cluster) *seedWorld {
	w := &seedWorld{t: t, c: c, cs: c.Clientset(), events: make(chan engine.Event, 100000),
		clock: enginetest.NewFakeClock(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))}

	gc := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.gcCalls = append(w.gcCalls, r.Clone(context.Background()))
		w.mu.Unlock()
		io.WriteString(rw, "collected")
	}))
	t.Cleanup(gc.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, gc.Listener.Addr().String())
	}

	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, engine.NotifierFunc(func(_ context.Context, n engine.Notification) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.notes = append(w.notes, n)
		return nil
	}))
	rbk8s.Register(reg, rbk8s.Deps{Client: c.Clientset(), Config: c.RESTConfig(), DenyNamespaces: []string{"production-critical"}})
	rbhttp.Register(reg, rbhttp.Deps{Client: &http.Client{Transport: tr}})
	reg.Resolver("metrics", func(_ context.Context, members []string, _ map[string]any) (any, error) {
		out := map[string]any{}
		for _, m := range members {
			switch m {
			case "podMemoryPercent":
				out[m] = 92.0
			case "errorRate":
				out[m] = 0.5
			default:
				return nil, fmt.Errorf("no metric %q", m)
			}
		}
		return out, nil
	})
	cat, diags := engine.LoadPaths(reg, "../../runbooks/high-memory-pod-remediation.yaml")
	if len(diags) > 0 {
		t.Fatalf("loading the seed runbook:\n%v", diags)
	}
	w.store = enginetest.NewMemStore()
	w.eng = engine.New(engine.Config{Store: w.store, Registry: reg, Catalog: cat, Clock: w.clock, Secrets: secretMap{"adminToken": seedToken}})
	w.eng.Subscribe(func(e engine.Event) { w.events <- e })
	t.Cleanup(w.eng.Close)
	return w
}

func (w *seedWorld) start(podName string) string {
	w.t.Helper()
	for len(w.events) > 0 { // what earlier runs left
		<-w.events
	}
	id, err := w.eng.Start(context.Background(), engine.StartRequest{Runbook: "high-memory-pod-remediation",
		Params:  map[string]any{"namespace": seedNS, "podName": podName},
		Trigger: engine.TriggerInfo{Type: "alert", Source: "prometheus", AlertID: "e2e", TriggeredBy: "alertmanager"}})
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

// waitEvent returns the next event matching typ and step name.
func (w *seedWorld) waitEvent(typ engine.EventType, step string) engine.Event {
	w.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case e := <-w.events:
			if e.Type == typ && e.Step != nil && e.Step.Name == step {
				return e
			}
		case <-deadline:
			w.t.Fatalf("timed out waiting for %s of %s", typ, step)
		}
	}
}

// park waits until the engine is parked on n timers of the fake clock.
func (w *seedWorld) park(n int) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.clock.WaitTimers(ctx, n); err != nil {
		w.t.Fatalf("waiting for the engine to park on %d timers: %v", n, err)
	}
}

// driveWait moves the fake clock by every each time the wait step is parked,
// until the step finishes; ready says when the real cluster is where the
// step's condition should hold (the clock is not moved before).
func (w *seedWorld) driveWait(step string, every time.Duration, ready func(context.Context) (bool, string)) *engine.StepRecord {
	w.t.Helper()
	poll(w.t, 60*time.Second, "cluster state before "+step, ready)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case e := <-w.events:
			if e.Type == engine.EventStepFinished && e.Step != nil && e.Step.Name == step {
				return e.Step
			}
			continue
		default:
		}
		if w.clock.Timers() >= 2 {
			w.clock.Advance(every)
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("%s did not finish", step)
	return nil
}

// driveWatch moves the fake clock ten seconds at a time while the engine
// waits on it (the post-change watch), until an event matches stop.
// onStart runs once when the watch starts.
func (w *seedWorld) driveWatch(stop func(engine.Event) bool, onStart func()) engine.Event {
	w.t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case e := <-w.events:
			if e.Type == engine.EventWatchStarted && onStart != nil {
				onStart()
				onStart = nil
			}
			if stop(e) {
				return e
			}
			continue
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		if w.clock.WaitTimers(ctx, 1) == nil {
			w.clock.Advance(10 * time.Second)
		}
		cancel()
	}
	w.t.Fatal("the watch did not get there")
	return engine.Event{}
}

func (w *seedWorld) outcome(id string) engine.Outcome {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := w.eng.Wait(ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// finished maps phase:step to the step's last finished record.
func (w *seedWorld) finished(id string) map[string]*engine.StepRecord {
	evs, _ := w.store.Events(context.Background(), id)
	out := map[string]*engine.StepRecord{}
	for _, e := range evs {
		if e.Type == engine.EventStepFinished && e.Step != nil {
			out[string(e.Step.Phase)+":"+e.Step.Name] = e.Step
		}
	}
	return out
}

func summary(fin map[string]*engine.StepRecord) string {
	var b strings.Builder
	for k, s := range fin {
		fmt.Fprintf(&b, "\n  %s: %s %s", k, s.Status, s.Error)
	}
	return b.String()
}

func (w *seedWorld) deployment() *appsv1.Deployment {
	w.t.Helper()
	d, err := w.cs.AppsV1().Deployments(seedNS).Get(context.Background(), seedDeploy, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

// replicaSetsByRevision maps revision to the deployment's ReplicaSet.
func (w *seedWorld) replicaSetsByRevision() map[string]appsv1.ReplicaSet {
	out := map[string]appsv1.ReplicaSet{}
	for _, rs := range replicaSets(context.Background(), w.t, w.cs, seedNS, seedDeploy) {
		out[rs.Annotations["deployment.kubernetes.io/revision"]] = rs
	}
	return out
}

// aPod returns the name of a running pod of the deployment's current
// ReplicaSet (pod names are "<replicaset>-<suffix>").
func (w *seedWorld) aPod() string {
	w.t.Helper()
	pods, err := w.cs.CoreV1().Pods(seedNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + seedDeploy})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			return p.Name
		}
	}
	w.t.Fatalf("no running pod of %s", seedDeploy)
	return ""
}

func (w *seedWorld) setUnschedulable(on bool) {
	w.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := w.cs.CoreV1().Nodes().Patch(context.Background(), k8s.NodeName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func TestSeedRunbookE2E(t *testing.T) {
	c := k8s.Start(t)
	c.Namespace(t, seedNS)
	cs := c.Clientset()
	ctx := t.Context()

	d := deployment(seedNS, seedDeploy, 3)
	if _, err := cs.AppsV1().Deployments(seedNS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "api-server ready", func(ctx context.Context) (bool, string) {
		return rolledOut(ctx, cs, seedNS, seedDeploy)
	})
	w := newSeedWorld(t, c)

	// Memory stays at 92% after GC: the runbook restarts the deployment
	// for real and verifies the new pods.
	var restartedTemplate corev1.PodTemplateSpec
	var restartedRS string
	t.Run("restart", func(t *testing.T) {
		w.t = t
		before := w.replicaSetsByRevision()
		if len(before) != 1 || before["1"].Name == "" {
			t.Fatalf("ReplicaSets before = %v", before)
		}
		pod := w.aPod()
		if !strings.HasPrefix(pod, before["1"].Name+"-") {
			t.Fatalf("pod %s is not named after ReplicaSet %s", pod, before["1"].Name)
		}
		id := w.start(pod)
		w.waitEvent(engine.EventStepStarted, "verify-memory-after-gc")
		w.park(2)
		w.clock.Advance(60 * time.Second) // memory still 92% → restart
		w.waitEvent(engine.EventStepFinished, "rolling-restart")
		rec := w.driveWait("verify-restart-success", 15*time.Second, func(ctx context.Context) (bool, string) {
			return rolledOut(ctx, cs, seedNS, seedDeploy)
		})
		if rec.Status != engine.StepSuccess {
			t.Errorf("verify-restart-success = %s %s", rec.Status, rec.Error)
		}
		// The healthy change is watched for 5 minutes (fake clock) against
		// the real cluster's health, then done.
		wf := w.driveWatch(func(e engine.Event) bool { return e.Type == engine.EventWatchFinished }, nil)
		if !strings.Contains(wf.Message, "no rollback trigger held") {
			t.Errorf("watch.finished = %q", wf.Message)
		}
		if got := w.outcome(id); got != engine.OutcomeSuccess {
			t.Fatalf("outcome = %s; steps:%s", got, summary(w.finished(id)))
		}
		fin := w.finished(id)
		for _, s := range []string{"precondition:check-deployment-health", "precondition:check-change-window",
			"step:capture-diagnostics", "step:trigger-gc", "step:rolling-restart", "step:verify-restart-success"} {
			if fin[s] == nil || fin[s].Status != engine.StepSuccess {
				t.Errorf("%s = %+v", s, fin[s])
			}
		}
		// capture-diagnostics ran `ps aux ... | head -20` through pods/exec;
		// kwok ran it on this host.
		if out := fmt.Sprint(fin["step:capture-diagnostics"].Output["stdout"]); !strings.Contains(out, "PID") {
			t.Errorf("capture-diagnostics stdout = %q", out)
		}
		if st := fin["step:rolling-restart"].State; fmt.Sprint(st["previousRevision"]) != "1" || fmt.Sprint(st["previousReplicaCount"]) != "3" {
			t.Errorf("rolling-restart saved %v, want previousRevision 1 and previousReplicaCount 3", st)
		}
		w.mu.Lock()
		if len(w.gcCalls) != 1 || w.gcCalls[0].URL.Path != "/admin/gc" || w.gcCalls[0].Header.Get("Authorization") != "Bearer "+seedToken {
			t.Errorf("gc calls = %d", len(w.gcCalls))
		}
		w.mu.Unlock()

		// A new ReplicaSet owns all the pods, and they are ready.
		after := w.replicaSetsByRevision()
		rs2, ok := after["2"]
		if !ok || rs2.Name == before["1"].Name {
			t.Fatalf("no new ReplicaSet at revision 2: %v", after)
		}
		poll(t, 30*time.Second, "new ReplicaSet ready", func(ctx context.Context) (bool, string) {
			after := w.replicaSetsByRevision()
			n, o := after["2"], after["1"]
			return n.Status.ReadyReplicas == 3 && *o.Spec.Replicas == 0 && o.Status.Replicas == 0,
				fmt.Sprintf("new ready=%d old replicas=%d", n.Status.ReadyReplicas, o.Status.Replicas)
		})
		dep := w.deployment()
		if dep.Spec.Template.Annotations[rbk8s.RestartedAtAnnotation] == "" {
			t.Errorf("template has no %s annotation", rbk8s.RestartedAtAnnotation)
		}
		restartedTemplate, restartedRS = dep.Spec.Template, rs2.Name
		t.Logf("rolling-restart: ReplicaSet %s -> %s", before["1"].Name, rs2.Name)
	})
	if t.Failed() {
		return
	}

	// The node is cordoned and one pod is lost: 2 of 3 replicas are ready,
	// enough for the precondition, but the restart's pods cannot be
	// scheduled, so verify-restart-success times out and the rollback
	// procedure undoes the rollout to the saved revision and restores the
	// replica count. Then the node comes back and the rollback is verified.
	t.Run("rollback", func(t *testing.T) {
		w.t = t
		w.setUnschedulable(true)
		uncordoned := false
		t.Cleanup(func() {
			if !uncordoned {
				w.setUnschedulable(false)
			}
		})
		lost := w.aPod()
		if err := cs.CoreV1().Pods(seedNS).Delete(ctx, lost, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, 60*time.Second, "2 of 3 replicas ready", func(ctx context.Context) (bool, string) {
			d := w.deployment()
			return d.Status.ReadyReplicas == 2 && d.Status.Replicas == 3, fmt.Sprintf("ready=%d replicas=%d", d.Status.ReadyReplicas, d.Status.Replicas)
		})
		pod := w.aPod()
		id := w.start(pod)
		w.waitEvent(engine.EventStepStarted, "verify-memory-after-gc")
		w.park(2)
		w.clock.Advance(60 * time.Second)
		w.waitEvent(engine.EventStepFinished, "rolling-restart")
		// Revision 3 has a pod, but it is Pending.
		poll(t, 60*time.Second, "restart stuck on an unschedulable pod", func(ctx context.Context) (bool, string) {
			n := w.replicaSetsByRevision()["3"]
			if n.Name == "" {
				return false, "no revision 3"
			}
			d := w.deployment()
			return n.Status.Replicas >= 1 && n.Status.ReadyReplicas == 0 && d.Status.ReadyReplicas == 2,
				fmt.Sprintf("new replicas=%d ready=%d, deployment ready=%d", n.Status.Replicas, n.Status.ReadyReplicas, d.Status.ReadyReplicas)
		})
		w.park(2)
		w.clock.Advance(300 * time.Second) // verify-restart-success times out → rollback
		undo := w.waitEvent(engine.EventStepFinished, "undo-rollout")
		if undo.Step.Status != engine.StepSuccess {
			t.Fatalf("undo-rollout = %s %s", undo.Step.Status, undo.Step.Error)
		}
		if fmt.Sprint(undo.Step.Output["toRevision"]) != "2" || undo.Step.Output["skipped"] != false {
			t.Errorf("undo-rollout output = %v", undo.Step.Output)
		}
		// The template is revision 2's again.
		dep := w.deployment()
		if got, want := dep.Spec.Template.Annotations[rbk8s.RestartedAtAnnotation], restartedTemplate.Annotations[rbk8s.RestartedAtAnnotation]; got != want {
			t.Errorf("after undo, restartedAt = %q, want revision 2's %q", got, want)
		}
		w.setUnschedulable(false)
		uncordoned = true
		rec := w.driveWait("verify-rollback", 5*time.Second, func(ctx context.Context) (bool, string) {
			return rolledOut(ctx, cs, seedNS, seedDeploy)
		})
		if rec.Status != engine.StepSuccess {
			t.Errorf("verify-rollback = %s %s", rec.Status, rec.Error)
		}
		if got := w.outcome(id); got != engine.OutcomeRollback {
			t.Fatalf("outcome = %s; steps:%s", got, summary(w.finished(id)))
		}
		fin := w.finished(id)
		want := map[string]engine.StepStatus{
			"step:rolling-restart":        engine.StepSuccess,
			"step:verify-restart-success": engine.StepFailure,
			"rollback:undo-rollout":       engine.StepSuccess,
			"rollback:restore-replicas":   engine.StepSuccess,
			"rollback:verify-rollback":    engine.StepSuccess,
			"rollback:notify-rollback":    engine.StepSuccess,
		}
		for k, v := range want {
			if fin[k] == nil || fin[k].Status != v {
				t.Errorf("%s = %+v, want %s", k, fin[k], v)
			}
		}
		if r := fin["rollback:restore-replicas"]; r != nil && fmt.Sprint(r.Input["replicas"]) != "3" {
			t.Errorf("restore-replicas input = %v", r.Input)
		}
		// Revision 2's ReplicaSet is back as revision 4 with all the pods.
		rs := w.replicaSetsByRevision()
		back, failed := rs["4"], rs["3"]
		if back.Name != restartedRS {
			t.Errorf("revision 4 is %s, want the ReplicaSet of revision 2's template", back.Name)
		}
		poll(t, 30*time.Second, "rolled-back ReplicaSet ready", func(ctx context.Context) (bool, string) {
			rs := w.replicaSetsByRevision()
			back, failed = rs["4"], rs["3"]
			return back.Status.ReadyReplicas == 3 && *failed.Spec.Replicas == 0 && failed.Status.Replicas == 0,
				fmt.Sprintf("back ready=%d, failed replicas=%d", back.Status.ReadyReplicas, failed.Status.Replicas)
		})
		if d := w.deployment(); *d.Spec.Replicas != 3 || d.Annotations["deployment.kubernetes.io/revision"] != "4" {
			t.Errorf("deployment replicas=%d revision=%s", *d.Spec.Replicas, d.Annotations["deployment.kubernetes.io/revision"])
		}
		w.mu.Lock()
		notes := append([]engine.Notification(nil), w.notes...)
		w.mu.Unlock()
		if len(notes) != 1 || !strings.Contains(notes[0].Message, "Rollback executed for "+pod+" in staging") {
			t.Errorf("notifications = %+v", notes)
		}
		t.Logf("rollback: revision 3 (%s) scaled to 0, revision 2's template back as revision 4 (%s)", failed.Name, back.Name)
	})
	if t.Failed() {
		return
	}

	// The restart goes through and verifies, then a pod of the new revision
	// stops being ready during the watch: three failed health checks in a
	// row (the real healthcheck root) roll the restart back.
	t.Run("health fails during the watch", func(t *testing.T) {
		w.t = t
		poll(t, 60*time.Second, "api-server ready", func(ctx context.Context) (bool, string) {
			return rolledOut(ctx, cs, seedNS, seedDeploy)
		})
		revBefore := w.deployment().Annotations["deployment.kubernetes.io/revision"]
		id := w.start(w.aPod())
		w.waitEvent(engine.EventStepStarted, "verify-memory-after-gc")
		w.park(2)
		w.clock.Advance(60 * time.Second)
		w.waitEvent(engine.EventStepFinished, "rolling-restart")
		rec := w.driveWait("verify-restart-success", 15*time.Second, func(ctx context.Context) (bool, string) {
			return rolledOut(ctx, cs, seedNS, seedDeploy)
		})
		if rec.Status != engine.StepSuccess {
			t.Fatalf("verify-restart-success = %s %s", rec.Status, rec.Error)
		}
		fired := w.driveWatch(func(e engine.Event) bool {
			return e.Type == engine.EventWatchCheck && e.Watch.Fired || e.Type == engine.EventWatchFinished
		}, func() {
			// A readiness probe starts failing on one new pod.
			p := w.aPod()
			pod, err := cs.CoreV1().Pods(seedNS).Get(ctx, p, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range pod.Status.Conditions {
				if pod.Status.Conditions[i].Type == corev1.PodReady || pod.Status.Conditions[i].Type == corev1.ContainersReady {
					pod.Status.Conditions[i].Status = corev1.ConditionFalse
				}
			}
			for i := range pod.Status.ContainerStatuses {
				pod.Status.ContainerStatuses[i].Ready = false
			}
			if _, err := cs.CoreV1().Pods(seedNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			poll(t, 30*time.Second, "the deployment sees 2 of 3 ready", func(ctx context.Context) (bool, string) {
				d := w.deployment()
				return d.Status.ReadyReplicas == 2, fmt.Sprintf("ready=%d", d.Status.ReadyReplicas)
			})
		})
		if fired.Type != engine.EventWatchCheck || fired.Watch.Condition != "healthcheck.failed" || fired.Watch.Count != 3 {
			t.Fatalf("watch ended with %s %+v (%s)", fired.Type, fired.Watch, fired.Message)
		}
		undo := w.waitEvent(engine.EventStepFinished, "undo-rollout")
		if undo.Step.Status != engine.StepSuccess {
			t.Fatalf("undo-rollout = %s %s", undo.Step.Status, undo.Step.Error)
		}
		if fmt.Sprint(undo.Step.Output["toRevision"]) != revBefore {
			t.Errorf("undo-rollout went to revision %v, want %s (before the restart)", undo.Step.Output["toRevision"], revBefore)
		}
		rec = w.driveWait("verify-rollback", 5*time.Second, func(ctx context.Context) (bool, string) {
			return rolledOut(ctx, cs, seedNS, seedDeploy)
		})
		if rec.Status != engine.StepSuccess {
			t.Errorf("verify-rollback = %s %s", rec.Status, rec.Error)
		}
		if got := w.outcome(id); got != engine.OutcomeRollback {
			t.Fatalf("outcome = %s; steps:%s", got, summary(w.finished(id)))
		}
		evs, _ := w.store.Events(ctx, id)
		for _, e := range evs {
			if e.Type == engine.EventRollbackStarted && e.Rollback.Reason != "healthcheck.failed" {
				t.Errorf("rollback reason = %q", e.Rollback.Reason)
			}
		}
	})
}
