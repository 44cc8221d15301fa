package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	rbhttp "github.com/runbookbot/runbookbot/integrations/http"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/integrations/prometheus"
)

const seedToken = "s3cr3t-CANARY-admin-token"

type secrets map[string]any

func (s secrets) Secret(_ context.Context, name string) (any, error) {
	v, ok := s[name]
	if !ok {
		return nil, fmt.Errorf("no secret %q", name)
	}
	return v, nil
}

// seedWorld runs the seed runbook through the engine with the real
// kubernetes, http and prometheus integrations against a fake clientset,
// an httptest GC endpoint and an httptest Prometheus.
type seedWorld struct {
	*env
	eng    *engine.Engine
	store  *enginetest.MemStore
	events chan engine.Event
	exec   *fakeExec

	mu      sync.Mutex
	gcCalls []*http.Request
}

func newSeedWorld(t *testing.T, memory float64) *seedWorld {
	t.Helper()
	w := &seedWorld{events: make(chan engine.Event, 10000), exec: &fakeExec{stdout: "PID %MEM\n1 91.0"}}

	// Every pod DNS name dials this server, like cluster DNS would.
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

	prom := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v := memory
		if strings.Contains(r.FormValue("query"), "http_requests_total") {
			v = 0.5 // errorRate
		}
		rw.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(rw, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"%g"]}]}}`, v)
	}))
	t.Cleanup(prom.Close)

	w.env = newEnv(t, kubernetes.Deps{Exec: w.exec.exec, DenyNamespaces: []string{"production-critical"}}, apiServer("staging")...)
	engine.RegisterBuiltins(w.reg, nil)
	rbhttp.Register(w.reg, rbhttp.Deps{Client: &http.Client{Transport: tr}})
	prometheus.Register(w.reg, prometheus.Config{URL: prom.URL, Queries: map[string]string{
		"podMemoryPercent": `max(container_memory_working_set_bytes{namespace="{{ namespace }}",pod="{{ podName }}"} / container_spec_memory_limit_bytes{namespace="{{ namespace }}",pod="{{ podName }}"}) * 100`,
		"errorRate":        `sum(rate(http_requests_total{code=~"5..",namespace="{{ namespace }}"}[1m])) / sum(rate(http_requests_total{namespace="{{ namespace }}"}[1m])) * 100`,
	}})
	cat, diags := engine.LoadPaths(w.reg, "../../runbooks/high-memory-pod-remediation.yaml")
	if len(diags) > 0 {
		t.Fatalf("loading the seed runbook:\n%v", diags)
	}
	w.store = enginetest.NewMemStore()
	w.eng = engine.New(engine.Config{Store: w.store, Registry: w.reg, Catalog: cat, Clock: w.clock, Secrets: secrets{"adminToken": seedToken}})
	w.eng.Subscribe(func(e engine.Event) { w.events <- e })
	t.Cleanup(w.eng.Close)
	return w
}

func (w *seedWorld) start() string {
	w.t.Helper()
	id, err := w.eng.Start(context.Background(), engine.StartRequest{Runbook: "high-memory-pod-remediation",
		Params:  map[string]any{"namespace": "staging", "podName": "api-server-abc123"},
		Trigger: engine.TriggerInfo{Type: "alert", Source: "prometheus", AlertID: "a-1", TriggeredBy: "alertmanager"}})
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

func (w *seedWorld) waitStep(name string) {
	w.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-w.events:
			if e.Type == engine.EventStepStarted && e.Step != nil && e.Step.Name == name {
				return
			}
		case <-deadline:
			w.t.Fatalf("step %s did not start", name)
		}
	}
}

// outcome waits for the execution to end, moving the fake clock through
// the post-change watch (the healthcheck and metric rollback triggers are
// polled on it) once the watch has started.
func (w *seedWorld) outcome(id string) engine.Outcome {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		out engine.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := w.eng.Wait(ctx, id)
		done <- result{out, err}
	}()
	watching := false
	for {
		select {
		case r := <-done:
			if r.err != nil {
				w.t.Fatal(r.err)
			}
			return r.out
		case e := <-w.events:
			if e.ExecutionID == id && e.Type == engine.EventWatchStarted {
				watching = true
			}
			continue
		default:
		}
		if !watching {
			select {
			case r := <-done:
				done <- r
			case e := <-w.events:
				if e.ExecutionID == id && e.Type == engine.EventWatchStarted {
					watching = true
				}
			case <-ctx.Done():
				w.t.Fatalf("execution %s did not finish", id)
			}
			continue
		}
		// Parked on the watch's next check: move to it.
		wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if w.clock.WaitTimers(wctx, 1) == nil {
			w.clock.Advance(10 * time.Second)
		}
		wcancel()
		if ctx.Err() != nil {
			w.t.Fatalf("execution %s did not finish its watch", id)
		}
	}
}

// finished maps phase:step to the step's last finished event.
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

func (w *seedWorld) noSecretInEvents(id string) {
	evs, _ := w.store.Events(context.Background(), id)
	data, _ := json.Marshal(evs)
	if strings.Contains(string(data), seedToken) {
		w.t.Error("an event contains the admin token")
	}
}

func TestSeedRunbookRestarts(t *testing.T) {
	w := newSeedWorld(t, 92)
	id := w.start()
	w.waitStep("verify-memory-after-gc")
	w.park(2)
	w.clock.Advance(60 * time.Second) // memory stays at 92%
	if got := w.outcome(id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s, finished = %v", got, w.finished(id))
	}
	fin := w.finished(id)
	for _, s := range []string{"precondition:check-deployment-health", "step:capture-diagnostics", "step:trigger-gc", "step:rolling-restart", "step:verify-restart-success"} {
		if fin[s] == nil || fin[s].Status != engine.StepSuccess {
			t.Errorf("%s = %+v", s, fin[s])
		}
	}
	if st := fin["step:rolling-restart"].State; fmt.Sprint(st["previousRevision"]) != "4" || fmt.Sprint(st["previousReplicaCount"]) != "3" {
		t.Errorf("rolling-restart state = %v", st)
	}
	if got := w.getDeployment("staging", "api-server").Spec.Template.Annotations[kubernetes.RestartedAtAnnotation]; got == "" {
		t.Error("deployment not restarted")
	}
	// The watch asked the healthcheck root, which answered: healthy.
	evs, _ := w.store.Events(context.Background(), id)
	checks := 0
	for _, e := range evs {
		if e.Type == engine.EventWatchCheck && e.Watch != nil && e.Watch.Condition == "healthcheck.failed" {
			checks++
			if e.Watch.Held || e.Watch.Error != "" {
				t.Errorf("healthcheck watch check = %+v", e.Watch)
			}
		}
	}
	if checks == 0 {
		t.Error("the watch never checked healthcheck.failed")
	}
	if len(w.exec.calls) != 1 || len(w.gcCalls) != 1 {
		t.Fatalf("exec calls %d, gc calls %d", len(w.exec.calls), len(w.gcCalls))
	}
	gc := w.gcCalls[0]
	if gc.Method != "POST" || gc.Host != "api-server-abc123.staging.svc.cluster.local:8080" || gc.URL.Path != "/admin/gc" || gc.Header.Get("Authorization") != "Bearer "+seedToken {
		t.Errorf("gc call = %s %s%s, Authorization set: %v", gc.Method, gc.Host, gc.URL.Path, gc.Header.Get("Authorization") != "")
	}
	w.noSecretInEvents(id)
}

func TestSeedRunbookRestartFailureRollsBack(t *testing.T) {
	w := newSeedWorld(t, 92)
	w.failOn("patch", "deployments", fmt.Errorf("etcdserver: request timed out"))
	id := w.start()
	w.waitStep("verify-memory-after-gc")
	w.park(2)
	w.clock.Advance(60 * time.Second)
	if got := w.outcome(id); got != engine.OutcomeRollback {
		t.Fatalf("outcome = %s, finished = %v", got, w.finished(id))
	}
	fin := w.finished(id)
	if fin["step:rolling-restart"].Status != engine.StepFailure || !strings.Contains(fin["step:rolling-restart"].Error, "etcdserver: request timed out") {
		t.Errorf("rolling-restart = %+v", fin["step:rolling-restart"])
	}
	for _, s := range []string{"rollback:undo-rollout", "rollback:restore-replicas", "rollback:verify-rollback", "rollback:notify-rollback"} {
		if fin[s] == nil || fin[s].Status != engine.StepSuccess {
			t.Errorf("%s = %+v", s, fin[s])
		}
	}
	// The restart never happened, so undo to the saved revision is a no-op.
	if fin["rollback:undo-rollout"].Output["skipped"] != true {
		t.Errorf("undo-rollout output = %v", fin["rollback:undo-rollout"].Output)
	}
	w.noSecretInEvents(id)
}

func TestSeedRunbookGCResolves(t *testing.T) {
	w := newSeedWorld(t, 60)
	id := w.start()
	if got := w.outcome(id); got != engine.OutcomeSuccess {
		t.Fatalf("outcome = %s", got)
	}
	if fin := w.finished(id); fin["step:rolling-restart"] != nil && fin["step:rolling-restart"].Status != engine.StepSkipped {
		t.Errorf("rolling-restart ran: %+v", fin["step:rolling-restart"])
	}
	if w.getDeployment("staging", "api-server").Spec.Template.Annotations != nil {
		t.Error("deployment restarted")
	}
}
