package bot

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
)

// Config wires a Bot.
type Config struct {
	Engine   *engine.Engine
	Auth     *commands.Authorizer
	Platform Platform
	// ApprovalChannel receives approval requests whose runbook names no
	// chat channel (default #incidents).
	ApprovalChannel string
	Limits          Limits
	Logger          *slog.Logger
	// Now is the wall clock for "elapsed" in threads (default time.Now).
	Now func() time.Time
	// Alerts, when set, makes alerts in chat and on the webhook start
	// their mapped runbooks.
	Alerts *AlertConfig
}

// Bot keeps chat in step with the engine's event log and answers people.
type Bot struct {
	cfg Config
	eng *engine.Engine
	out *outbox
	log *slog.Logger

	mu        sync.Mutex
	threads   map[string]*thread
	approvals map[string]*approvalView
	alerts    alertState

	wg     sync.WaitGroup
	cancel context.CancelFunc
	unsub  func()
}

// New returns a bot; Start connects it to the engine.
func New(cfg Config) *Bot {
	if cfg.ApprovalChannel == "" {
		cfg.ApprovalChannel = "#incidents"
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Auth == nil {
		cfg.Auth = commands.NewAuthorizer(nil, nil)
	}
	return &Bot{cfg: cfg, eng: cfg.Engine, log: cfg.Logger, out: newOutbox(cfg.Platform, cfg.Limits, cfg.Logger),
		threads: map[string]*thread{}, approvals: map[string]*approvalView{},
		alerts: alertState{byExec: map[string]alertRun{}, pending: map[string]pendingRun{}, channels: map[string]bool{}, queue: make(chan alerts.Group, 10000)}}
}

// Start rebuilds the threads of unfinished executions from the store (so
// their messages and buttons keep working after a restart), subscribes to
// new events and starts sending.
func (b *Bot) Start(ctx context.Context) error {
	b.unsub = b.eng.Subscribe(b.onEvent)
	ids, err := b.eng.Store().Unfinished(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		evs, err := b.eng.Store().Events(ctx, id)
		if err != nil {
			return err
		}
		b.mu.Lock()
		if _, seen := b.threads[id]; !seen {
			for _, e := range evs {
				b.applyLocked(e, true)
			}
		}
		b.mu.Unlock()
	}
	if b.alertsOn() {
		if err := b.restoreAlerts(ctx); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.out.run(rctx)
	}()
	if b.alertsOn() {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.webhookWorker(rctx)
		}()
	}
	return nil
}

// Close stops sending. Messages still queued are left (the store has the
// state; a restart re-renders it).
func (b *Bot) Close() {
	if b.unsub != nil {
		b.unsub()
	}
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
}

// Flush waits until every queued message has been sent.
func (b *Bot) Flush(ctx context.Context) error {
	for {
		select {
		case <-b.out.idleC():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats reports what the bot sent.
func (b *Bot) Stats() Stats { return b.out.snapshot() }

func (b *Bot) onEvent(e engine.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.applyLocked(e, false)
}

// applyLocked folds an event into its thread and queues the messages it
// changed. On replay (restart) every message is re-rendered once, found by
// its block id rather than posted again.
func (b *Bot) applyLocked(e engine.Event, replay bool) {
	t := b.threads[e.ExecutionID]
	if t == nil && e.Type != engine.EventExecutionStarted && !replay {
		// An execution this bot did not see start: taken over from another
		// replica. Rebuild its thread from the log, then apply the event.
		evs, err := b.eng.Store().Events(context.Background(), e.ExecutionID)
		if err != nil || len(evs) == 0 || evs[0].Type != engine.EventExecutionStarted {
			return
		}
		for _, prev := range evs {
			if prev.Seq >= e.Seq {
				break
			}
			b.applyLocked(prev, true)
		}
		t = b.threads[e.ExecutionID]
	}
	if t == nil {
		if e.Type != engine.EventExecutionStarted {
			return
		}
		t = newThread(e.ExecutionID)
		if e.Trigger != nil {
			t.channel = e.Trigger.Channel
			t.parentTS = e.Trigger.Message
		}
		if rb, err := b.eng.Catalog().Lookup(e.RunbookName); err == nil {
			t.totalSteps = len(rb.Preconditions) + len(rb.Steps)
		}
		b.threads[e.ExecutionID] = t
	}
	parent, step, approval := t.apply(e)
	if t.channel == "" {
		return // started outside chat (CLI, API): nothing to render
	}
	if parent {
		key := "p:" + t.id
		b.out.mark(item{key: key, channel: t.channel, ts: t.parentTS, render: b.renderer(func() Message { return renderParent(t, b.cfg.Now()) }),
			threadTS: func() string { return t.trigger.Thread },
			posted: func(ch, ts string) {
				b.mu.Lock()
				if t.parentTS == "" {
					t.parentTS = ts
				}
				b.mu.Unlock()
			}})
	}
	if step != "" {
		s := t.byKey[step]
		it := item{key: "s:" + t.id + ":" + step, channel: t.channel, render: b.renderer(func() Message { return renderStep(t, s) }),
			threadTS: b.threadOf(t)}
		if replay {
			it.find = "step:" + t.id + ":" + step
		}
		b.out.mark(it)
	}
	if approval != "" {
		a := t.approvals[approval]
		b.approvals[approval] = a
		a.threadCh, a.threadTS = t.channel, t.parentTS
		ch := b.approvalChannel(a.rec)
		it := item{key: "a:" + approval, channel: ch, render: b.renderer(func() Message { return b.renderApproval(a) }),
			threadTS: func() string { return "" }}
		if replay {
			it.find = "approval:" + approval
		}
		b.out.mark(it)
		if e.Type == engine.EventApprovalEscalated && !replay {
			b.escalate(a, e)
		}
	}
	if e.Type == engine.EventExecutionFinished {
		if b.alertsOn() && !replay {
			go b.alertFinished(context.Background(), e.ExecutionID)
		}
		for id, a := range t.approvals {
			if a.decided != nil {
				delete(b.approvals, id)
			}
		}
		b.pruneLocked()
	}
}

// threadOf returns the thread replies go to: the chat thread the execution
// lives in (the alert's, or the parent's).
func (b *Bot) threadOf(t *thread) func() string {
	return func() string {
		b.mu.Lock()
		defer b.mu.Unlock()
		if t.trigger.Thread != "" {
			return t.trigger.Thread
		}
		return t.parentTS
	}
}

// renderer wraps a render func with the bot lock (state is shared with the
// event path).
func (b *Bot) renderer(f func() Message) func() Message {
	return func() Message {
		b.mu.Lock()
		defer b.mu.Unlock()
		return f()
	}
}

func (b *Bot) approvalChannel(rec engine.ApprovalRecord) string {
	for _, c := range rec.Channels {
		if (c.Type == "slack" || c.Type == "") && c.Channel != "" {
			return c.Channel
		}
	}
	return b.cfg.ApprovalChannel
}

func (b *Bot) renderApproval(a *approvalView) Message {
	link := a.link
	if link == "" && a.threadCh != "" && a.threadTS != "" {
		// Fetched once per approval (the thread does not move), without
		// holding the bot's lock over a network call.
		ch, ts := a.threadCh, a.threadTS
		b.mu.Unlock()
		l, err := b.cfg.Platform.Permalink(context.Background(), ch, ts)
		b.mu.Lock()
		if err == nil {
			link, a.link = l, l
		}
	}
	bypass := false
	if rb, err := b.eng.Catalog().Lookup(a.runbook); err == nil {
		for _, ap := range rb.Approvals {
			if ap.Type == "override" {
				bypass = true
			}
		}
	}
	return renderApproval(a, link, bypass)
}

// escalate posts the escalation into the approval message's thread,
// mentioning the next tier.
func (b *Bot) escalate(a *approvalView, e engine.Event) {
	mentions := b.cfg.Auth.Mentions(e.Approval.Notify)
	text := ":rotating_light: " + e.Message
	if len(mentions) > 0 {
		text += "\n" + joinSpace(mentions) + " please review."
	}
	key := "a:" + a.rec.ID
	b.out.mark(item{key: "esc:" + a.rec.ID, oneShot: true, channel: b.approvalChannel(a.rec),
		threadTS: func() string { _, ts := b.out.lookup(key); return ts },
		render:   func() Message { return Message{Text: text, Blocks: []Block{{Kind: KindSection, Text: text}}} }})
}

func joinSpace(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// pruneLocked forgets finished threads once there are many.
func (b *Bot) pruneLocked() {
	if len(b.threads) < 2000 {
		return
	}
	for id, t := range b.threads {
		if t.status == engine.StatusFinished {
			delete(b.threads, id)
			b.out.forget("s:" + id + ":")
			b.out.forget("p:" + id)
			for aid := range t.approvals {
				delete(b.approvals, aid)
				b.out.forget("a:" + aid)
			}
		}
	}
}
