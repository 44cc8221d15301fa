package incident

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/incident/pdemu"
)

func TestAlertExecutionWritesTheAlertsIncidentAndResolvesIt(t *testing.T) {
	emu, srv := emulator(t)
	existing := emu.AddIncident(testService, "PodMemoryHigh on api", "fp-123")
	st := enginetest.NewMemStore()
	x := newExec("e1", "high-memory-pod-remediation",
		&engine.TriggerInfo{Type: "alert", AlertID: "fp-123", TriggeredBy: "alert:PodMemoryHigh"}, map[string]any{"namespace": "staging"}).
		step("capture-diagnostics", engine.StepSuccess, "").
		approval("rolling-restart", "U-alice", "go ahead, memory is climbing", engine.DecisionApprove).
		step("rolling-restart", engine.StepSuccess, "").
		finish(engine.OutcomeSuccess)
	appendAll(t, st, x)

	drain(t, timeline(st, &MemoryCheckpoints{}, NewPagerDuty(pdConfig(srv.URL), nil, nil)))

	if got := len(emu.Incidents()); got != 1 {
		t.Fatalf("incidents = %d, want the alert's one only", got)
	}
	inc, _ := emu.Incident(existing)
	if inc.Status != "resolved" || !strings.Contains(inc.Resolution, "resolution_type: automated") {
		t.Errorf("incident status %q resolution %q, want resolved automated", inc.Status, inc.Resolution)
	}
	notes := noteTexts(emu, existing)
	wantTitles := []string{
		"Runbook started: high-memory-pod-remediation",
		"Step: capture-diagnostics — success",
		"Approval requested for: rolling-restart",
		"Approval approve: rolling-restart — approve",
		"Step: rolling-restart — success",
		"Runbook completed successfully — success",
	}
	if len(notes) != len(wantTitles) {
		t.Fatalf("notes:\n%s\nwant %d", strings.Join(notes, "\n---\n"), len(wantTitles))
	}
	for i, w := range wantTitles {
		if !strings.HasPrefix(notes[i], w) {
			t.Errorf("note %d = %q, want it to start with %q", i, notes[i], w)
		}
	}
	for _, want := range []string{"approver: U-alice", "comment: go ahead, memory is climbing"} {
		if !strings.Contains(notes[3], want) {
			t.Errorf("approval note lacks %q:\n%s", want, notes[3])
		}
	}
	if !strings.Contains(notes[0], "parameters: namespace=staging") || !strings.Contains(notes[0], "trigger: alert") {
		t.Errorf("start note lacks trigger and parameters:\n%s", notes[0])
	}
}

func TestFailedExecutionEscalatesACreatedIncident(t *testing.T) {
	for _, outcome := range []engine.Outcome{engine.OutcomeFailure, engine.OutcomeRollback} {
		t.Run(string(outcome), func(t *testing.T) {
			emu, srv := emulator(t)
			st := enginetest.NewMemStore()
			x := newExec("e2", "disk-cleanup", &engine.TriggerInfo{Type: "manual", TriggeredBy: "U-bob"}, nil).
				step("clean", engine.StepFailure, "rm: permission denied")
			if outcome == engine.OutcomeRollback {
				x.add(engine.Event{Type: engine.EventRollbackStarted, Rollback: &engine.RollbackRecord{Triggered: true, Reason: "step.clean.failed", Procedure: "undo"}})
			}
			x.finish(outcome)
			appendAll(t, st, x)
			drain(t, timeline(st, &MemoryCheckpoints{}, NewPagerDuty(pdConfig(srv.URL), nil, nil)))

			incs := emu.Incidents()
			if len(incs) != 1 {
				t.Fatalf("incidents = %d, want one created", len(incs))
			}
			inc := incs[0]
			if inc.Key != "runbookbot-e2" || inc.Title != "Auto-remediation: disk-cleanup" {
				t.Errorf("created incident key %q title %q", inc.Key, inc.Title)
			}
			if inc.EscalationLevel != 2 || inc.Status != "triggered" {
				t.Errorf("escalation level %d status %s, want level 2, triggered", inc.EscalationLevel, inc.Status)
			}
			notes := noteTexts(emu, inc.ID)
			last := notes[len(notes)-1]
			if !strings.HasPrefix(last, EscalationNote) {
				t.Errorf("last note = %q, want the escalation note", last)
			}
			if !strings.Contains(strings.Join(notes, "\n"), "error: rm: permission denied") {
				t.Errorf("the failed step's error is not in the timeline:\n%s", strings.Join(notes, "\n---\n"))
			}
		})
	}
}

func TestTriggerNamesTheIncident(t *testing.T) {
	emu, srv := emulator(t)
	named := emu.AddIncident(testService, "checkout down", "k-named")
	keyed := emu.AddIncident(testService, "paged", "dedup-77")
	st := enginetest.NewMemStore()
	a := newExec("a", "rb", &engine.TriggerInfo{Type: "manual"}, map[string]any{"incident": named}).finish(engine.OutcomePartial)
	b := newExec("b", "rb", &engine.TriggerInfo{Type: "alert", Labels: map[string]string{"dedup_key": "dedup-77"}, AlertID: "other"}, nil).finish(engine.OutcomeAborted)
	appendAll(t, st, a, b)
	drain(t, timeline(st, &MemoryCheckpoints{}, NewPagerDuty(pdConfig(srv.URL), nil, nil)))
	if n := len(emu.Incidents()); n != 2 {
		t.Fatalf("incidents = %d, want no new one", n)
	}
	for _, id := range []string{named, keyed} {
		if n := len(emu.Notes(id)); n != 2 {
			t.Errorf("incident %s has %d notes, want start and outcome", id, n)
		}
		if inc, _ := emu.Incident(id); inc.Status != "triggered" {
			t.Errorf("partial/aborted changed the status of %s to %s", id, inc.Status)
		}
	}
}

// crashing wraps a provider: the nth call (from 1) crashes the process,
// before or after the provider acted on it.
type crashing struct {
	Provider
	n, calls int
	after    bool
}

var errCrash = errors.New("process crashed")

func (c *crashing) call(f func() error) error {
	c.calls++
	if c.calls != c.n {
		return f()
	}
	if c.after {
		_ = f()
	}
	return errCrash
}

func (c *crashing) Attach(ctx context.Context, a Attachment) (inc Incident, err error) {
	err = c.call(func() error { inc, err = c.Provider.Attach(ctx, a); return err })
	return inc, err
}
func (c *crashing) Note(ctx context.Context, i Incident, e Entry) error {
	return c.call(func() error { return c.Provider.Note(ctx, i, e) })
}
func (c *crashing) Resolve(ctx context.Context, i Incident, e Entry) error {
	return c.call(func() error { return c.Provider.Resolve(ctx, i, e) })
}
func (c *crashing) Escalate(ctx context.Context, i Incident, e Entry) error {
	return c.call(func() error { return c.Provider.Escalate(ctx, i, e) })
}

var markerRE = regexp.MustCompile(`\[runbookbot ([^\]]+)\]`)

// A crash before or after any provider call, followed by a restart from
// the file checkpoint, leaves the same incident and timeline as no crash.
func TestCrashAtAnyPointNeitherLosesNorDuplicatesEntries(t *testing.T) {
	build := func() *enginetest.MemStore {
		st := enginetest.NewMemStore()
		ok := newExec("ok", "rb", &engine.TriggerInfo{Type: "alert", AlertID: "fp-9"}, nil).
			step("one", engine.StepSuccess, "").approval("two", "U-carol", "fine", engine.DecisionApprove).
			step("two", engine.StepSuccess, "").finish(engine.OutcomeSuccess)
		bad := newExec("bad", "rb", &engine.TriggerInfo{Type: "manual"}, nil).step("one", engine.StepFailure, "boom").finish(engine.OutcomeFailure)
		// Interleave the two executions as concurrent runs would.
		for i := 0; i < max(len(ok.evs), len(bad.evs)); i++ {
			for _, x := range []*exec{ok, bad} {
				if i < len(x.evs) {
					if err := st.Append(context.Background(), x.evs[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		return st
	}
	type result struct {
		incidents int
		markers   []string
		statuses  []string
	}
	observe := func(emu *pdemu.Server) result {
		var r result
		for _, inc := range emu.Incidents() {
			r.incidents++
			r.statuses = append(r.statuses, fmt.Sprintf("%s:%s:%d", inc.Key, inc.Status, inc.EscalationLevel))
			for _, n := range emu.Notes(inc.ID) {
				r.markers = append(r.markers, markerRE.FindStringSubmatch(n.Content)[1])
			}
		}
		return r
	}
	emu, srv := emulator(t)
	emu.AddIncident(testService, "alert", "fp-9")
	counter := &crashing{Provider: NewPagerDuty(pdConfig(srv.URL), nil, nil)}
	drain(t, timeline(build(), &MemoryCheckpoints{}, counter))
	want := observe(emu)
	calls := counter.calls
	if calls < 12 {
		t.Fatalf("only %d provider calls", calls)
	}
	for n := 1; n <= calls; n++ {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("call%d/after=%v", n, after), func(t *testing.T) {
				emu, srv := emulator(t)
				emu.AddIncident(testService, "alert", "fp-9")
				st := build()
				cp := NewFileCheckpoints(filepath.Join(t.TempDir(), "incident.json"))
				first := timeline(st, cp, &crashing{Provider: NewPagerDuty(pdConfig(srv.URL), nil, nil), n: n, after: after})
				if err := first.Drain(context.Background()); !errors.Is(err, errCrash) {
					t.Fatalf("first run: %v, want the crash", err)
				}
				second := timeline(st, cp, NewPagerDuty(pdConfig(srv.URL), nil, nil))
				second.o.Owner = "restarted"
				drain(t, second)
				if got := observe(emu); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("after a crash at call %d:\n got %v\nwant %v", n, got, want)
				}
			})
		}
	}
}

// Lost answers (PagerDuty acted, the reply never came) and 429/500 answers
// are retried without duplicating anything.
func TestLostAnswersAndRetryableErrors(t *testing.T) {
	emu, srv := emulator(t)
	st := enginetest.NewMemStore()
	appendAll(t, st, newExec("e", "rb", &engine.TriggerInfo{Type: "manual"}, nil).step("one", engine.StepSuccess, "").finish(engine.OutcomeSuccess))
	tl := timeline(st, &MemoryCheckpoints{}, NewPagerDuty(pdConfig(srv.URL), nil, nil))
	emu.LoseNextAnswers(1) // the create
	emu.FailNext(429)
	attempts := 0
	for {
		attempts++
		err := tl.Drain(context.Background())
		if err == nil {
			break
		}
		if attempts > 10 {
			t.Fatalf("still failing: %v", err)
		}
	}
	if attempts < 3 {
		t.Errorf("drained in %d attempts; the injected failures did not happen", attempts)
	}
	incs := emu.Incidents()
	if len(incs) != 1 || len(emu.Notes(incs[0].ID)) != 3 || incs[0].Status != "resolved" {
		t.Fatalf("incidents %+v notes %d, want one resolved with 3 notes", incs, len(emu.Notes(incs[0].ID)))
	}
	if s := tl.Stats(); s.Errors < 2 || s.Dropped != 0 {
		t.Errorf("stats %+v, want the failures counted and nothing dropped", s)
	}
}

func TestRateLimitWaitsForTheReset(t *testing.T) {
	emu := pdemu.New(pdemu.Config{Tokens: []string{testToken}, RateLimit: 1})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	p := NewPagerDuty(pdConfig(srv.URL), nil, nil)
	if _, _, err := p.find(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	_, _, err := p.find(context.Background(), "k")
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 429 || pe.Code != 2020 || !pe.Retryable || pe.RetryAfter <= 0 {
		t.Fatalf("over the limit: %#v, want a retryable 429 with ratelimit-reset", err)
	}
	tl := timeline(enginetest.NewMemStore(), &MemoryCheckpoints{}, p)
	if d := tl.delay(1, err); d < pe.RetryAfter {
		t.Errorf("retry after %v, want at least ratelimit-reset %v", d, pe.RetryAfter)
	}
}

func TestRefusedOperationsAreDroppedNotRetriedForever(t *testing.T) {
	emu, srv := emulator(t)
	st := enginetest.NewMemStore()
	// The named incident does not exist: attaching is refused (404), the
	// execution's entries are skipped, the next execution still gets its.
	appendAll(t, st, newExec("gone", "rb", &engine.TriggerInfo{Type: "manual"}, map[string]any{"incident": "QNOPE"}).finish(engine.OutcomeSuccess),
		newExec("next", "rb", &engine.TriggerInfo{Type: "manual"}, nil).finish(engine.OutcomeSuccess))
	tl := timeline(st, &MemoryCheckpoints{}, NewPagerDuty(pdConfig(srv.URL), nil, nil))
	drain(t, tl)
	if s := tl.Stats(); s.Dropped != 1 {
		t.Errorf("dropped = %d, want the refused attach", s.Dropped)
	}
	incs := emu.Incidents()
	if len(incs) != 1 || incs[0].Key != "runbookbot-next" || incs[0].Status != "resolved" {
		t.Errorf("incidents %+v, want only next's, resolved", incs)
	}
}

func TestRunbooksWithoutAProviderAreLeftAlone(t *testing.T) {
	emu, srv := emulator(t)
	st := enginetest.NewMemStore()
	appendAll(t, st, newExec("quiet", "example-echo", &engine.TriggerInfo{Type: "manual"}, nil).finish(engine.OutcomeSuccess))
	cfg, err := ParseConfig([]byte("pagerduty: {token: x, from: a@b.c, serviceId: S}\ndefault: pagerduty\nrunbooks: {example-echo: none}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tl := NewTimeline(Options{Source: st, Checkpoints: &MemoryCheckpoints{}, Route: cfg.ProviderFor,
		Providers: map[string]Provider{"pagerduty": NewPagerDuty(pdConfig(srv.URL), nil, nil)}})
	drain(t, tl)
	if n := len(emu.Requests()); n != 0 {
		t.Errorf("PagerDuty got %v for a runbook configured none", emu.Requests())
	}
}

// readOnly hides every method of a store but ReadFrom, like a store that
// cannot tell its newest Pos (the embedded one).
type readOnly struct{ st *enginetest.MemStore }

func (r readOnly) ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error) {
	return r.st.ReadFrom(ctx, after, limit)
}

// Turning timelines on does not write history into incidents, and a
// process that stops before its first operation does not lose the
// executions that started meanwhile: the starting point is kept at once.
func TestStartAtHeadSkipsHistoryButNothingAfter(t *testing.T) {
	for name, src := range map[string]func(*enginetest.MemStore) Source{
		"LastPos": func(st *enginetest.MemStore) Source { return st },
		"ReadFrom only": func(st *enginetest.MemStore) Source {
			return readOnly{st}
		},
	} {
		t.Run(name, func(t *testing.T) {
			emu, srv := emulator(t)
			st := enginetest.NewMemStore()
			for i := range 3 {
				appendAll(t, st, newExec(fmt.Sprintf("old%d", i), "rb", &engine.TriggerInfo{Type: "manual"}, nil).finish(engine.OutcomeSuccess))
			}
			cp := NewFileCheckpoints(filepath.Join(t.TempDir(), "incident.json"))
			open := func(owner string) *Timeline {
				tl := NewTimeline(Options{Source: src(st), Checkpoints: cp, StartAtHead: true, Owner: owner, Batch: 2,
					Providers: map[string]Provider{"pagerduty": NewPagerDuty(pdConfig(srv.URL), nil, nil)},
					Route:     func(string) string { return "pagerduty" }, Create: true})
				return tl
			}
			drain(t, open("first")) // started, found nothing new, stopped
			if n := len(emu.Incidents()); n != 0 {
				t.Fatalf("history written into %d incidents", n)
			}
			appendAll(t, st, newExec("new", "rb", &engine.TriggerInfo{Type: "manual"}, nil).finish(engine.OutcomeSuccess))
			drain(t, open("second"))
			incs := emu.Incidents()
			if len(incs) != 1 || incs[0].Key != "runbookbot-new" || len(emu.Notes(incs[0].ID)) != 2 {
				t.Fatalf("incidents %+v, want the new execution's only, with start and outcome", incs)
			}
		})
	}
}

// A replica that dies with an operation in flight leaves it to nobody
// until IntentTTL has passed; then another replica reconciles it and
// finishes the timeline without writing anything twice.
func TestReplicaTakesOverAnOperationInFlightAfterIntentTTL(t *testing.T) {
	emu, srv := emulator(t)
	st := enginetest.NewMemStore()
	appendAll(t, st, newExec("e", "rb", &engine.TriggerInfo{Type: "manual"}, nil).step("one", engine.StepSuccess, "").finish(engine.OutcomeSuccess))
	clock := enginetest.NewFakeClock(t0)
	cp := &MemoryCheckpoints{}
	replica := func(owner string, p Provider) *Timeline {
		return NewTimeline(Options{Source: st, Checkpoints: cp, Providers: map[string]Provider{"pagerduty": p},
			Route: func(string) string { return "pagerduty" }, Create: true, Owner: owner, IntentTTL: time.Minute, Clock: clock})
	}
	// a dies after its second note reached PagerDuty (attach, start note, step note).
	a := replica("a", &crashing{Provider: NewPagerDuty(pdConfig(srv.URL), nil, nil), n: 3, after: true})
	if err := a.Drain(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("replica a: %v, want the crash", err)
	}
	b := replica("b", NewPagerDuty(pdConfig(srv.URL), nil, nil))
	if err := b.Drain(context.Background()); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Fatalf("replica b within the TTL: %v, want it to leave a's operation alone", err)
	}
	if n := len(emu.Notes(emu.Incidents()[0].ID)); n != 2 {
		t.Fatalf("%d notes while a's operation is in flight, want 2", n)
	}
	clock.Advance(time.Minute)
	drain(t, b)
	inc := emu.Incidents()[0]
	notes := noteTexts(emu, inc.ID)
	if len(notes) != 3 || inc.Status != "resolved" {
		t.Fatalf("after the takeover: %s with notes\n%s\nwant resolved with start, step and outcome once each", inc.Status, strings.Join(notes, "\n---\n"))
	}
}
