package bot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// fakePlatform is a chat platform in memory: messages by reference, every
// call in order, and an optional failure for every call.
type fakePlatform struct {
	mu    sync.Mutex
	n     int
	msgs  map[string]Message // id → latest content
	conv  map[string]string  // id → conversation
	under map[string]string  // id → thread it was posted in
	calls []string           // "post <conv> <key>", "update <key>"
	fail  error
	whisp []string
	// name is the platform's name (default "fake").
	name string
	// failFor, when set, is asked before every call; its error fails it.
	failFor func(call, conv string) error
}

func newFake() *fakePlatform {
	return &fakePlatform{msgs: map[string]Message{}, conv: map[string]string{}, under: map[string]string{}}
}

func key(m Message) string {
	if len(m.Blocks) > 0 {
		return m.Blocks[0].ID
	}
	return ""
}

func (f *fakePlatform) Name() string {
	if f.name != "" {
		return f.name
	}
	return "fake"
}
func (f *fakePlatform) Limits() Limits {
	return Limits{PostBurst: 100, PostEvery: time.Millisecond, UpdateBurst: 100, UpdateEvery: time.Millisecond}
}

func (f *fakePlatform) Post(_ context.Context, conv, thread string, m Message) (MessageRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return MessageRef{}, f.fail
	}
	if f.failFor != nil {
		if err := f.failFor("post", conv); err != nil {
			return MessageRef{}, err
		}
	}
	f.n++
	id := fmt.Sprintf("m%04d", f.n)
	f.msgs[id], f.conv[id], f.under[id] = m, conv, thread
	f.calls = append(f.calls, "post "+conv+" "+key(m))
	return MessageRef{Conversation: conv, ID: id}, nil
}

func (f *fakePlatform) Update(_ context.Context, ref MessageRef, m Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if _, ok := f.msgs[ref.ID]; !ok {
		return fmt.Errorf("no message %s", ref.ID)
	}
	f.msgs[ref.ID] = m
	f.calls = append(f.calls, "update "+key(m))
	return nil
}

func (f *fakePlatform) Whisper(_ context.Context, _, user string, m Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.whisp = append(f.whisp, user+": "+m.Summary.Plain())
	return nil
}

func (f *fakePlatform) Link(_ context.Context, ref MessageRef) (string, error) {
	return "https://chat.example/" + ref.ID, nil
}

func (f *fakePlatform) Find(_ context.Context, conv, thread, k string) (MessageRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, m := range f.msgs {
		if key(m) == k && f.conv[id] == conv {
			return MessageRef{Conversation: conv, ID: id}, nil
		}
	}
	return MessageRef{}, ErrNotFound
}

// byKey returns the message whose first block has id k, and how many
// carry it.
func (f *fakePlatform) byKey(k string) (Message, string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var found Message
	var id string
	n := 0
	for i, m := range f.msgs {
		if key(m) == k {
			found, id = m, i
			n++
		}
	}
	return found, id, n
}

// text is a message as a person reads it: every span, every field, every
// button's label and command.
func text(m Message) string {
	var b strings.Builder
	for _, bl := range m.Blocks {
		b.WriteString(bl.Text.Plain() + "\n")
		for _, f := range bl.Fields {
			b.WriteString(f.Label + ": " + f.Value.Plain() + "\n")
		}
		for _, btn := range bl.Buttons {
			b.WriteString("[" + btn.Label + " → " + btn.Command + "]\n")
		}
	}
	return b.String()
}

const testRunbooks = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: gated, version: "1.0.0"}
parameters:
  - {name: service, type: string, required: true}
steps:
  - {name: check, type: log, action: print, params: {message: "checking {{ service }}"}}
  - name: change
    type: log
    action: print
    params: {message: "changing {{ service }}"}
    requiresApproval: {type: manual}
  - {name: tell, type: log, action: print, params: {message: "done"}}
`

const quickRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: quick, version: "1.0.0"}
parameters:
  - {name: tag, type: string, required: true}
steps:
  - {name: a, type: log, action: print, params: {message: "a"}}
  - {name: b, type: log, action: print, params: {message: "b"}}
  - {name: c, type: log, action: print, params: {message: "c"}}
`

// harness is a bot on a fake platform over a real engine, memory store and
// fake clock. Restart keeps the store and the view store: a new process.
type harness struct {
	t      *testing.T
	store  *enginetest.MemStore
	views  *MemoryViews
	clock  *enginetest.FakeClock
	cat    *engine.Catalog
	reg    *engine.Registry
	p      *fakePlatform
	limits Limits
	// elapsedEvery is Config.ElapsedEvery (default: never, so that tests
	// count only the calls events cause).
	elapsedEvery time.Duration
	// alerts is Config.Alerts (default none).
	alerts *AlertConfig
	// auth is Config.Auth (default: everyone may do everything).
	auth *commands.Authorizer
	// schedules is Config.Schedules (default none).
	schedules Schedules
	eng       *engine.Engine
	bot       *Bot
	stop      func()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with setup applied before the bot starts.
func newHarnessWith(t *testing.T, setup func(h *harness)) *harness {
	t.Helper()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	cat, diags := engine.LoadSources(reg, []string{"gated.yaml", "quick.yaml"},
		map[string][]byte{"gated.yaml": []byte(testRunbooks), "quick.yaml": []byte(quickRunbook)})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	h := &harness{t: t, store: enginetest.NewMemStore(), views: NewMemoryViews(), cat: cat, reg: reg, p: newFake(), elapsedEvery: -1,
		clock: enginetest.NewFakeClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))}
	if setup != nil {
		setup(h)
	}
	h.start()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) start() {
	h.startWith(true)
}

// startWith starts a new process; without recover it drives nothing yet
// (as a replica before it has taken a dead one's executions over).
func (h *harness) startWith(recover bool) {
	h.eng = engine.New(engine.Config{Store: h.store, Registry: h.reg, Catalog: h.cat, Clock: h.clock})
	h.bot = New(Config{Engine: h.eng, Views: h.views, Chats: []Chat{{Platform: h.p, ApprovalChannel: "#approvals", Limits: h.limits}},
		SweepEvery: 50 * time.Millisecond, RetryEvery: 10 * time.Millisecond, ElapsedEvery: h.elapsedEvery, Now: h.clock.Now, Alerts: h.alerts,
		Auth: h.auth, Schedules: h.schedules})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.bot.Run(ctx) }()
	if recover {
		if _, err := h.eng.Recover(context.Background()); err != nil {
			h.t.Fatal(err)
		}
	}
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.eng.Close()
		h.stop = func() {}
	}
}

func (h *harness) do(user, line string) Response {
	h.t.Helper()
	return h.bot.Handle(context.Background(), Request{Platform: h.p.Name(), User: user, Conversation: "#ops", Line: line})
}

func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.bot.Flush(ctx); err != nil {
		h.t.Fatalf("flush: %v (lagging %v)", err, h.bot.Lagging())
	}
}

// waitEvent polls the store until an execution has an event of type typ.
func (h *harness) waitEvent(typ engine.EventType) engine.Event {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _ := h.store.ReadFrom(context.Background(), 0, 100000)
		for _, e := range evs {
			if e.Type == typ {
				return e
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no %s event", typ)
		}
		time.Sleep(time.Millisecond) // polling the store with a deadline
	}
}

func replyText(r Response) string {
	if r.Reply == nil {
		return ""
	}
	return text(*r.Reply)
}

// A run is in the store when Handle returns (platforms answer after it),
// and the parent is a rendering of the view, not posted before the start.
func TestRunIsPersistedBeforeTheAnswer(t *testing.T) {
	h := newHarness(t)
	r := h.do("U1", "run quick tag=x")
	if r.Reply != nil {
		t.Fatalf("unexpected reply: %s", replyText(r))
	}
	rows, err := h.store.History(context.Background(), engine.HistoryQuery{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("history after the answer = %v, %v; want the execution recorded", rows, err)
	}
	id := rows[0].ExecutionID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.eng.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	h.flush()
	parent, _, n := h.p.byKey(parentKey(id))
	// Users are spelled as rbac.yaml spells them (commands.UserID).
	if n != 1 || !strings.Contains(text(parent), "Succeeded") || !strings.Contains(text(parent), "Requested by: @fake:U1") {
		t.Fatalf("%d parents; parent = %s", n, text(parent))
	}
	for _, s := range []string{"a", "b", "c"} {
		if !strings.Contains(text(parent), "[ok] "+s) {
			t.Errorf("parent's step list lacks %s: %s", s, text(parent))
		}
	}
}

// A click whose button the bot never issued is refused, audited in the
// execution's log, and not recorded as a decision.
func TestForgedClicksAreRefusedAndAudited(t *testing.T) {
	h := newHarness(t)
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	id := req.Approval.ID
	for _, c := range []struct{ name, button, line string }{
		{"unknown action id", "approval:approve:zzz", "approve " + id},
		{"forged value", "approval:approve:approve", "approve " + id + " --choice=zzz"},
		{"line for another verb", "approval:approve:approve", "bypass " + id},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.bot.Handle(context.Background(), Request{Platform: "fake", User: "U2", Button: c.button, Line: c.line})
			if !strings.Contains(replyText(r), "did not offer that button") {
				t.Errorf("reply = %q", replyText(r))
			}
		})
	}
	evs, _ := h.store.Events(context.Background(), req.ExecutionID)
	refused := 0
	for _, e := range evs {
		switch e.Type {
		case engine.EventApprovalRefused:
			if e.Actor == "fake:U2" && e.AuditLevel == "warning" {
				refused++
			}
		case engine.EventApprovalDecided, engine.EventApprovalVote:
			t.Fatalf("a forged click was recorded: %s", e.Type)
		}
	}
	if refused != 3 {
		t.Errorf("%d refusals audited, want 3", refused)
	}
	// The real button still works, parsed and authorized like the typed
	// command.
	r := h.bot.Handle(context.Background(), Request{Platform: "fake", User: "U2", Button: "approval:approve:approve", Line: "approve " + id})
	if r.Reply != nil {
		t.Fatalf("real click answered %q", replyText(r))
	}
	h.waitEvent(engine.EventExecutionFinished)
	h.flush()
	card, _, n := h.p.byKey(approvalKey(id))
	if n != 1 || !strings.Contains(text(card), "Approved: change") || strings.Contains(text(card), "[Approve") {
		t.Errorf("%d cards; card = %s", n, text(card))
	}
}

// A reject button that asks for a reason opens a form; the form's line
// completes the command.
func TestRejectAsksForAReasonThroughAForm(t *testing.T) {
	h := newHarness(t)
	h.do("U1", "run gated service=web")
	id := h.waitEvent(engine.EventApprovalRequested).Approval.ID
	r := h.bot.Handle(context.Background(), Request{Platform: "fake", User: "U2", Button: "approval:reject:reject", Line: "reject " + id})
	if r.Modal == nil || r.Modal.Command != "reject "+id {
		t.Fatalf("no form: %+v", r)
	}
	form := Request{Platform: "fake", User: "U2", Form: r.Modal.ID, Line: r.Modal.Command, Values: map[string]string{"comment": " "}}
	if errs := CheckForm(form); errs["comment"] == "" {
		t.Fatalf("empty reason accepted: %v", errs)
	}
	form.Values["comment"] = "wrong service"
	if r := h.bot.Handle(context.Background(), form); r.Reply != nil {
		t.Fatalf("submit answered %q", replyText(r))
	}
	h.waitEvent(engine.EventExecutionFinished)
	h.flush()
	exec := engine.ExecutionOf(id)
	step, _, _ := h.p.byKey(stepKey(exec, "step:1"))
	if got := text(step); !strings.Contains(got, "not run — rejected by @fake:U2: wrong service") {
		t.Errorf("rejected step reads %q", got)
	}
	card, _, _ := h.p.byKey(approvalKey(id))
	if got := text(card); !strings.Contains(got, "Rejected: change") || !strings.Contains(got, "Rejected by @fake:U2") {
		t.Errorf("card reads %q", got)
	}
}

// Cancelling an execution closes its approval card: no live buttons.
func TestCancelClosesTheApprovalCard(t *testing.T) {
	h := newHarness(t)
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	if r := h.do("U1", "cancel "+req.ExecutionID[:8]); !strings.Contains(replyText(r), "Cancelling") {
		t.Fatalf("cancel by prefix: %q", replyText(r))
	}
	h.waitEvent(engine.EventExecutionFinished)
	h.flush()
	card, _, _ := h.p.byKey(approvalKey(req.Approval.ID))
	if got := text(card); !strings.Contains(got, "Cancelled: change") || strings.Contains(got, "[Approve") {
		t.Errorf("card after cancel = %s", got)
	}
}

// The chat view converges to the store after an abrupt stop at any point:
// nothing delivered (the platform failed every call), or some of it.
// Messages are never posted twice.
func TestViewConvergesAfterAbruptStops(t *testing.T) {
	h := newHarness(t)
	h.p.fail = fmt.Errorf("platform down")
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	h.stop() // nothing was shown; the outbox's queue dies with the process

	h.p.mu.Lock()
	h.p.fail = nil
	h.p.mu.Unlock()
	h.start()
	h.flush()
	card, _, n := h.p.byKey(approvalKey(req.Approval.ID))
	if n != 1 || !strings.Contains(text(card), "[Approve") {
		t.Fatalf("%d cards after restart; card = %s", n, text(card))
	}
	if _, err := h.eng.Decide(context.Background(), engine.DecisionRequest{ApprovalID: req.Approval.ID, User: "U2", Verb: engine.DecisionApprove}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(engine.EventExecutionFinished)
	h.stop() // maybe before the final state was shown
	h.start()
	h.flush()
	parent, _, pn := h.p.byKey(parentKey(req.ExecutionID))
	card, _, cn := h.p.byKey(approvalKey(req.Approval.ID))
	if pn != 1 || cn != 1 {
		t.Fatalf("%d parents, %d cards: posted twice", pn, cn)
	}
	if !strings.Contains(text(parent), "Succeeded") || !strings.Contains(text(parent), "Approved by @U2") {
		t.Errorf("parent = %s", text(parent))
	}
	if strings.Contains(text(card), "[Approve") || !strings.Contains(text(card), "Approved: change") {
		t.Errorf("card = %s", text(card))
	}
	for i, s := range []string{"check", "change", "tell"} {
		m, _, n := h.p.byKey(stepKey(req.ExecutionID, fmt.Sprintf("step:%d", i)))
		if n != 1 || !strings.Contains(text(m), "ok") {
			t.Errorf("step %s: %d messages: %s", s, n, text(m))
		}
	}
	if lag := h.bot.Lagging(); len(lag) != 0 {
		t.Errorf("lagging after flush: %v", lag)
	}
	// A third start re-renders nothing: every message already shows the
	// truth.
	h.stop()
	h.p.mu.Lock()
	calls := len(h.p.calls)
	h.p.mu.Unlock()
	h.start()
	h.flush()
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	if extra := h.p.calls[calls:]; len(extra) != 0 {
		t.Errorf("a converged restart made calls: %v", extra)
	}
}

// Under a tight post budget, new executions' parents go before step
// replies; step replies that wait too long are left out and the parent
// says so (its list stays complete).
func TestParentsGoBeforeStepReplies(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.limits = Limits{PostBurst: 1, PostEvery: 60 * time.Millisecond, UpdateBurst: 100, UpdateEvery: time.Millisecond, StepPatience: 150 * time.Millisecond}
	h.start()
	for i := 0; i < 4; i++ {
		h.do("U1", fmt.Sprintf("run quick tag=%d", i))
	}
	h.flush()
	h.p.mu.Lock()
	var posts []string
	for _, c := range h.p.calls {
		if strings.HasPrefix(c, "post ") {
			posts = append(posts, c)
		}
	}
	h.p.mu.Unlock()
	if len(posts) < 4 {
		t.Fatalf("posts = %v", posts)
	}
	for i, p := range posts[:4] {
		if !strings.Contains(p, " exec:") {
			t.Errorf("post %d = %q; want the 4 parents first (%v)", i, p, posts)
		}
	}
	if h.bot.Stats().Skipped == 0 {
		t.Fatalf("no step reply was left out under pressure; posts %v", posts)
	}
	rows, _ := h.store.History(context.Background(), engine.HistoryQuery{})
	for _, r := range rows {
		parent, _, _ := h.p.byKey(parentKey(r.ExecutionID))
		if got := text(parent); !strings.Contains(got, "[ok] a") || !strings.Contains(got, "[ok] c") {
			t.Errorf("parent list incomplete: %s", got)
		}
	}
}

// Status accepts a unique prefix and, alone, lists what is running.
func TestStatusByPrefixAndActive(t *testing.T) {
	h := newHarness(t)
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	if got := replyText(h.do("U1", "status")); !strings.Contains(got, "1 active executions") || !strings.Contains(got, "waiting at change") {
		t.Errorf("status alone = %q", got)
	}
	if got := replyText(h.do("U1", "status "+req.ExecutionID[:6])); !strings.Contains(got, req.ExecutionID) {
		t.Errorf("status by prefix = %q", got)
	}
	if got := replyText(h.do("U1", "status zzzzzz")); !strings.Contains(got, "No execution") {
		t.Errorf("status of nothing = %q", got)
	}
}

// The approval card shows what the gated step will do and a readable
// reason; escalations mention groups.
func TestApprovalCardShowsTheGatedStep(t *testing.T) {
	h := newHarness(t)
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	h.flush()
	card, _, _ := h.p.byKey(approvalKey(req.Approval.ID))
	if got := text(card); !strings.Contains(got, "message=changing web") {
		t.Errorf("card lacks the gated step's resolved parameters: %s", got)
	}
	got := readableReason(`auto-approval condition "context.environment != 'production'" is false`, map[string]any{"environment": "production"})
	if want := "Needs approval: it runs automatically only when environment is not 'production', and here environment is production."; got.Plain() != want {
		t.Errorf("reason = %q, want %q", got.Plain(), want)
	}
}

// A click that lands while no replica drives its execution (its runner
// died, its lease has not expired) is answered at once and applied once a
// runner takes the execution over; the person hears nothing more when it
// decides the gate.
func TestClickWhileTheRunnerIsReplacedIsAppliedLater(t *testing.T) {
	h := newHarness(t)
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	h.flush()
	h.stop() // the runner dies with the gate open
	h.startWith(false)
	card, _, _ := h.p.byKey(approvalKey(req.Approval.ID))
	var line, id string
	for _, bl := range card.Blocks {
		for _, b := range bl.Buttons {
			if strings.HasPrefix(b.Command, "approve ") {
				line, id = b.Command, b.ID
			}
		}
	}
	if line == "" {
		t.Fatalf("no Approve button on %s", text(card))
	}
	r := h.bot.Handle(context.Background(), Request{Platform: "fake", User: "U2", Conversation: "#approvals", Line: line, Button: id})
	if got := replyText(r); !strings.Contains(got, "being replaced") || !strings.Contains(got, "will be applied") {
		t.Fatalf("answer to the click = %q", got)
	}
	if evs, _ := h.store.Events(context.Background(), req.ExecutionID); evs[len(evs)-1].Type != engine.EventApprovalRequested {
		t.Fatalf("decided before any runner took the execution over: %s", evs[len(evs)-1].Type)
	}
	if _, err := h.eng.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := h.eng.Wait(ctx, req.ExecutionID); err != nil || out != engine.OutcomeSuccess {
		t.Fatalf("outcome %s, %v", out, err)
	}
	evs, _ := h.store.Events(context.Background(), req.ExecutionID)
	decided := 0
	for _, e := range evs {
		if e.Type == engine.EventApprovalDecided {
			decided++
			if e.Approval == nil || e.Approval.Approver != "fake:U2" && e.Actor != "fake:U2" {
				t.Errorf("decided by %+v, actor %s; want the clicker", e.Approval, e.Actor)
			}
		}
	}
	if decided != 1 {
		t.Errorf("%d decisions recorded, want 1", decided)
	}
}

// A running execution's parent keeps its elapsed time live: edited again
// with no new event, as time passes.
func TestParentElapsedTimeIsRefreshed(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.elapsedEvery = time.Millisecond
	h.start()
	h.do("U1", "run gated service=web")
	req := h.waitEvent(engine.EventApprovalRequested)
	h.flush()
	h.clock.Advance(90 * time.Second) // before the approval's first escalation
	deadline := time.Now().Add(10 * time.Second)
	for {
		parent, _, _ := h.p.byKey(parentKey(req.ExecutionID))
		if strings.Contains(text(parent), "elapsed 1m30s") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the parent's elapsed time was never refreshed: %s", text(parent))
		}
		time.Sleep(5 * time.Millisecond) // polling the fake platform with a deadline
	}
	if evs, _ := h.store.Events(context.Background(), req.ExecutionID); evs[len(evs)-1].Type != engine.EventApprovalRequested {
		t.Fatalf("an event (%s) came after the request: the refresh was not what edited the parent", evs[len(evs)-1].Type)
	}
}
