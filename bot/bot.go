package bot

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
)

// Chat is one chat platform the bot is on.
type Chat struct {
	Platform Platform
	// ApprovalChannel receives approval cards whose runbook names no
	// channel of this platform.
	ApprovalChannel string
	// Limits overrides the platform's own (tests scale them).
	Limits Limits
}

// Config wires a Bot.
type Config struct {
	Engine *engine.Engine
	Auth   *commands.Authorizer
	Chats  []Chat
	// Views keeps what conversations were shown (default: in memory).
	Views  ViewStore
	Logger *slog.Logger
	// Now is the wall clock for "elapsed" in threads (default time.Now).
	Now func() time.Time
	// Alerts, when set, makes alerts in chat and on the webhook start
	// their mapped runbooks.
	Alerts *AlertConfig
	// SweepEvery is how often sends that were given up are retried
	// (default 10s).
	SweepEvery time.Duration
	// ElapsedEvery is how often a running execution's parent is edited
	// to keep its elapsed time live, at the lowest priority and within
	// the edit budget (default 30s, checked every SweepEvery; negative:
	// never).
	ElapsedEvery time.Duration
	// RetryEvery and RetryFor pace decisions waiting for a runner to take
	// their execution over (default every 1s for 2m).
	RetryEvery, RetryFor time.Duration
	// Owner names this replica. When Views is shared by replicas (it is a
	// ViewLease), only the replica holding the lease shows the log in
	// chat, and another takes over within LeaseTTL when it dies.
	Owner string
	// LeaseTTL is how long the view lease lasts unless renewed (default
	// 10s).
	LeaseTTL time.Duration
	// Schedules, when set, answers `/runbook schedules` and pauses and
	// resumes schedules from chat.
	Schedules Schedules
}

// chat is a platform with its outbox.
type chat struct {
	p               Platform
	out             *outbox
	approvalChannel string
}

// Bot keeps chat in step with the engine's event log and answers people.
type Bot struct {
	cfg   Config
	eng   *engine.Engine
	log   *slog.Logger
	chats map[string]*chat
	order []*chat
	view  *view

	alerts alertState

	ctx     context.Context // owned goroutines run under it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ownMu   sync.Mutex
	stopped bool // Run is waiting for its goroutines: start no more
}

// New returns a bot; Run drives it.
func New(cfg Config) *Bot {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Auth == nil {
		cfg.Auth = commands.NewAuthorizer(nil, nil)
	}
	if cfg.Views == nil {
		cfg.Views = NewMemoryViews()
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 10 * time.Second
	}
	if cfg.ElapsedEvery == 0 {
		cfg.ElapsedEvery = 30 * time.Second
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = time.Second
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 2 * time.Minute
	}
	b := &Bot{cfg: cfg, eng: cfg.Engine, log: cfg.Logger, chats: map[string]*chat{},
		alerts: alertState{byExec: map[string]alertRun{}, pending: map[string]pendingRun{}, channels: map[string]bool{}, notices: map[string]*notice{}, queue: make(chan alerts.Group, 10000)}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	for _, c := range cfg.Chats {
		l := c.Limits
		if l == (Limits{}) {
			l = c.Platform.Limits()
		}
		if c.ApprovalChannel == "" {
			c.ApprovalChannel = "#incidents"
		}
		ch := &chat{p: c.Platform, out: newOutbox(l, cfg.Logger), approvalChannel: c.ApprovalChannel}
		b.chats[c.Platform.Name()] = ch
		b.order = append(b.order, ch)
	}
	b.view = newView(b, cfg.Views)
	return b
}

// Run shows the event log in chat and handles alerts until ctx ends; it
// returns once every goroutine it started has stopped. Queued sends are
// left: the store has the state and the next start shows it.
func (b *Bot) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, b.cancel)
	defer stop()
	defer b.cancel()
	unsub := b.eng.Subscribe(func(e engine.Event) {
		b.view.poke()
		if e.Type == engine.EventExecutionFinished && b.alertsOn() {
			// The alert's slot is freed by the replica that tracks it,
			// whichever replica shows the log.
			id := e.ExecutionID
			b.goOwned(func(ctx context.Context) { b.alertFinished(ctx, id) })
		}
	})
	defer unsub()
	if b.alertsOn() {
		if err := b.restoreAlerts(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it started
			}
			return fmt.Errorf("restoring alerts: %w", err)
		}
	}
	for _, c := range b.order {
		b.goOwned(c.out.run)
	}
	if b.alertsOn() {
		b.goOwned(b.webhookWorker)
	}
	err := b.view.run(b.ctx)
	if err != nil {
		err = fmt.Errorf("chat view: %w", err)
	}
	b.cancel()
	unsub()
	b.ownMu.Lock()
	b.stopped = true
	b.ownMu.Unlock()
	b.wg.Wait()
	return err
}

// goOwned runs f under the bot's context; Run waits for it.
func (b *Bot) goOwned(f func(ctx context.Context)) {
	b.ownMu.Lock()
	defer b.ownMu.Unlock()
	if b.stopped {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(b.ctx)
	}()
}

// Flush waits until everything in the log is shown and nothing is queued.
func (b *Bot) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		idle := true
		for _, c := range b.order {
			select {
			case <-c.out.idleC():
			default:
				idle = false
			}
		}
		if idle && b.view.settled(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C: // polling with a deadline: settling spans store, view and outboxes
		}
	}
}

// Lagging lists executions whose conversation does not yet show their
// latest event.
func (b *Bot) Lagging() []string { return b.view.lagging() }

// Stats reports what the bot sent, over every platform.
func (b *Bot) Stats() Stats {
	var s Stats
	for _, c := range b.order {
		x := c.out.snapshot()
		s.Sent += x.Sent
		s.RateLimited += x.RateLimited
		s.Paced += x.Paced
		s.Errors += x.Errors
		s.Skipped += x.Skipped
	}
	return s
}

// OutboxPending is how many renders wait to be sent (or are being sent)
// to chat, over every platform.
func (b *Bot) OutboxPending() int {
	n := 0
	for _, c := range b.order {
		n += c.out.queued()
	}
	return n
}

// chatFor returns the platform an execution is shown on, or nil.
func (b *Bot) chatFor(tr engine.TriggerInfo) *chat {
	if tr.Channel == "" {
		return nil
	}
	if c := b.chats[tr.Platform]; c != nil {
		return c
	}
	if tr.Platform == "" && len(b.order) == 1 {
		return b.order[0] // stored before triggers named their platform
	}
	return nil
}

// approvalChannel is where an approval card goes on a platform.
func (b *Bot) approvalChannel(c *chat, rec engine.ApprovalRecord) string {
	for _, ch := range rec.Channels {
		if (ch.Type == c.p.Name() || ch.Type == "chat" || ch.Type == "") && ch.Channel != "" {
			return ch.Channel
		}
	}
	return c.approvalChannel
}

// groups are the RBAC config's groups (for mentions).
func (b *Bot) groups() []engine.Group {
	if cat := b.eng.Catalog(); cat != nil && cat.RBAC != nil {
		return cat.RBAC.Groups
	}
	return nil
}

// gatedParams resolves the parameters of the step an approval gates, as a
// dry run shows them (secrets masked).
func (b *Bot) gatedParams(t *thread, step string) map[string]any {
	rb, err := b.eng.Catalog().Lookup(t.runbook)
	if err != nil {
		return nil
	}
	in := map[string]any{}
	for k, v := range t.params {
		if v != nil && v != engine.Mask {
			in[k] = v
		}
	}
	plan, err := engine.DryRun(context.Background(), b.eng.Registry(), rb, in, t.context)
	if err != nil {
		return nil
	}
	for _, s := range plan.Steps {
		if s.Name == step {
			return s.Params
		}
	}
	return nil
}

// whisper shows a late answer to one person, within the platform's budget.
func (b *Bot) whisper(platform, conversation, user string, m Message) {
	c := b.chats[platform]
	if c == nil {
		return
	}
	key := "w|" + user + "|" + time.Now().Format(time.RFC3339Nano)
	c.out.add(mark{key: key, conv: conversation, kind: kindWhisper, prio: prioUrgent, ready: true,
		send: func(ctx context.Context) error { return c.p.Whisper(ctx, conversation, user, m) }})
}

// Whisper shows m to user in conversation on platform, retried within the
// platform's budget: for answers that come after the platform's own reply
// window has closed.
func (b *Bot) Whisper(platform, conversation, user string, m Message) {
	b.whisper(platform, conversation, user, m)
}
