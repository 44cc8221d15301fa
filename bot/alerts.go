package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
)

// AlertConfig turns alerts that land in chat (or on the Alertmanager
// webhook) into threads and executions.
type AlertConfig struct {
	Matcher *alerts.Matcher
	Tracker *alerts.Tracker
	Rules   alerts.Rules
	// Channels are the watched channels (ids or #names); empty watches
	// every channel the bot is in.
	Channels []string
	// WebhookChannel receives threads for webhook alerts whose mapping
	// names no channel.
	WebhookChannel string
	// WebhookPlatform is the platform webhook alerts open threads on
	// (default: the first chat).
	WebhookPlatform string
}

// ChannelMessage is a message posted in a channel the bot can see.
type ChannelMessage struct {
	Platform    string
	Channel     string
	TS          string
	ThreadTS    string
	User        string
	BotID       string
	Username    string
	Text        string
	Attachments []alerts.Attachment
}

type alertRun struct {
	fp, runbook, platform string
}

type pendingRun struct {
	alert    alerts.Alert
	decision alerts.Decision
	channel  string
	thread   string
	line     string
	ref      MessageRef
}

// alertState is the bot's alert bookkeeping.
type alertState struct {
	queue    chan alerts.Group
	backlog  atomic.Int64
	mu       sync.Mutex
	byExec   map[string]alertRun
	pending  map[string]pendingRun
	channels map[string]bool
	notices  map[string]*notice
	rooting  map[string]bool // alert fingerprints whose thread root is queued
	// resolving are resolutions of alerts whose thread root is queued,
	// said in the thread once it is posted.
	resolving map[string]alerts.Alert
	storms    map[string]*storm // by platform|channel
}

func (b *Bot) alertsOn() bool { return b.cfg.Alerts != nil && b.cfg.Alerts.Matcher != nil }

func (b *Bot) watched(ch string) bool {
	a := b.cfg.Alerts
	if len(a.Channels) == 0 {
		return true
	}
	for _, c := range a.Channels {
		if c == ch || strings.TrimPrefix(c, "#") == ch {
			return true
		}
	}
	b.alerts.mu.Lock()
	defer b.alerts.mu.Unlock()
	return b.alerts.channels[ch]
}

// WatchChannelID marks a channel id as watched (the platform resolves
// #names to ids at start).
func (b *Bot) WatchChannelID(id string) {
	b.alerts.mu.Lock()
	b.alerts.channels[id] = true
	b.alerts.mu.Unlock()
}

// HandleChannelMessage looks at a root message posted by another bot or an
// incoming webhook in a watched channel, and acts on the alerts in it.
func (b *Bot) HandleChannelMessage(ctx context.Context, m ChannelMessage) {
	if !b.alertsOn() || m.BotID == "" || (m.ThreadTS != "" && m.ThreadTS != m.TS) || !b.watched(m.Channel) {
		return
	}
	as, err := b.cfg.Alerts.Rules.ParseSlackMessage(alerts.SlackMessage{Text: m.Text, Attachments: m.Attachments, Username: m.Username, BotID: m.BotID})
	if err != nil {
		return // chatter, not an alert
	}
	// The parser reads every platform's alert messages alike; the alert
	// came from the platform it was posted on (a Discord embed is not a
	// Slack message).
	for i := range as {
		if m.Platform != "" {
			as[i].Source = m.Platform
		}
	}
	c := b.chats[m.Platform]
	if c == nil {
		return
	}
	for _, a := range as {
		b.handleAlert(ctx, c, a, m.Channel, m.TS)
	}
}

// say posts a one-off message in a thread.
func (b *Bot) say(c *chat, channel, thread string, text Rich) {
	msg := textMessage(text)
	c.out.add(mark{key: "r|" + uuid.NewString(), conv: channel, kind: kindPost, prio: prioNormal, ready: true,
		send: func(ctx context.Context) error {
			ref, err := c.p.Post(ctx, channel, thread, msg)
			if err == nil {
				c.out.learn(channel, ref.Conversation)
			}
			return err
		}})
}

func (b *Bot) handleAlert(ctx context.Context, c *chat, a alerts.Alert, channel, thread string) {
	tr := b.cfg.Alerts.Tracker
	now := b.eng.Clock().Now()
	if !a.Firing() {
		if ch, ts, ok := tr.Thread(a.Fingerprint); ok {
			channel, thread = ch, ts
		}
		if thread != "" {
			b.say(c, channel, thread, R(Sym(StatusResolved), Txt(" "), Bold("Resolved:"), Txt(" "+a.Summary())))
		}
		tr.Unqueue(a.Fingerprint)
		return
	}
	if _, _, ok := tr.Thread(a.Fingerprint); !ok && thread != "" {
		tr.SetThread(a.Fingerprint, channel, thread)
	} else if ok {
		channel, thread, _ = tr.Thread(a.Fingerprint)
	}
	for _, d := range b.cfg.Alerts.Matcher.MatchAll(a) {
		switch {
		case d.Runbook == "":
			if len(d.Suggestions) > 0 {
				text := R(Sym(StatusSearch), Txt(" No runbook is mapped to "), Bold(a.Name), Txt(". Related:"))
				for _, s := range d.Suggestions {
					text = append(text, Txt(" "), Code(s))
				}
				b.say(c, channel, thread, text)
			}
		case d.Skip != "":
			b.say(c, channel, thread, R(Sym(StatusInfo), Txt(" Not running "), Code(d.Runbook), Txt(": "+d.Skip)))
		case !d.AutoTrigger:
			b.offerRun(ctx, c, a, d, channel, thread)
		default:
			b.autoRun(ctx, c, a, d, channel, thread, now)
		}
	}
}

func (b *Bot) autoRun(ctx context.Context, c *chat, a alerts.Alert, d alerts.Decision, channel, thread string, now time.Time) {
	tr := b.cfg.Alerts.Tracker
	ok, existing := tr.Begin(a.Fingerprint, d.Runbook, now)
	if !ok {
		if existing == "" {
			n := tr.Queue(d.Runbook, a)
			b.queueNotice(c, d.Runbook, channel, n)
		} else if thread != "" {
			b.pointTo(ctx, c, existing, channel, thread)
		}
		return // the same alert is already being handled (or cooling down)
	}
	id, err := b.eng.Start(ctx, engine.StartRequest{Runbook: d.Runbook, Params: d.Params,
		Trigger: engine.TriggerInfo{Type: "alert", Source: a.Source, AlertID: a.Fingerprint, TriggeredBy: "alert:" + a.Name,
			Platform: c.p.Name(), Channel: channel, Thread: thread, Labels: a.Labels}})
	if err != nil {
		tr.Abort(a.Fingerprint, d.Runbook)
		b.log.Error("cannot start an alert's runbook", "runbook", d.Runbook, "alert", a.Name, "err", err)
		b.say(c, channel, thread, R(Sym(StatusFailed), Txt(" Could not start "), Code(d.Runbook), Txt("; the error is in the bot's log.")))
		return
	}
	tr.Attach(a.Fingerprint, d.Runbook, id)
	b.alerts.mu.Lock()
	b.alerts.byExec[id] = alertRun{fp: a.Fingerprint, runbook: d.Runbook, platform: c.p.Name()}
	b.alerts.mu.Unlock()
	b.finishedEarly(ctx, id)
}

// finishedEarly frees the slot of an execution that finished before it was
// recorded as the alert's (a precondition failing at once).
func (b *Bot) finishedEarly(ctx context.Context, id string) {
	if s, err := b.eng.Store().Get(ctx, id); err == nil && s.Status == engine.StatusFinished {
		b.alertFinished(ctx, id)
	}
}

// pointTo answers a duplicate alert with a link to the thread already
// handling it.
func (b *Bot) pointTo(ctx context.Context, c *chat, existing, channel, thread string) {
	s, err := b.eng.Store().Get(ctx, existing)
	if err != nil || s.Trigger.Thread == "" {
		return
	}
	if s.Trigger.Channel == channel && s.Trigger.Thread == thread {
		return // the same thread
	}
	where := MessageRef{Conversation: s.Trigger.Channel, ID: s.Trigger.Thread}
	c.out.add(mark{key: "r|" + uuid.NewString(), conv: channel, kind: kindPost, prio: prioNormal, ready: true,
		send: func(ctx context.Context) error {
			text := R(Sym(StatusInfo), Txt(" Already being handled by "), Code(existing))
			if l, err := c.p.Link(ctx, where); err == nil && l != "" {
				text = append(text, Txt(" in "), Link(l, "this thread"))
			}
			_, err := c.p.Post(ctx, channel, thread, textMessage(append(text, Txt("."))))
			return err
		}})
}

// queueNotice keeps one message per runbook saying how many alerts wait
// for a free slot, instead of one message per alert.
func (b *Bot) queueNotice(c *chat, runbook, channel string, _ int) {
	key := "q|" + runbook
	render := func() Message {
		q := b.cfg.Alerts.Tracker.Queued(runbook)
		text := R(Sym(StatusQueued), Txt(" "), Bold(fmt.Sprintf("%d alert(s) queued", len(q))), Txt(" for "), Code(runbook),
			Txt(fmt.Sprintf(" (at most %d run at once):", b.cfg.Alerts.Tracker.Limit(runbook))))
		for i, a := range q {
			if i == 10 {
				text = append(text, BR(), Txt(fmt.Sprintf("… and %d more", len(q)-10)))
				break
			}
			text = append(text, BR(), Txt("• "+a.Summary()))
		}
		if len(q) == 0 {
			text = R(Sym(StatusOK), Txt(" No alerts queued for "), Code(runbook), Txt("."))
		}
		return Message{Summary: text, Blocks: []Block{{Kind: KindSection, ID: "queue:" + runbook, Text: text}}}
	}
	b.alerts.mu.Lock()
	n := b.alerts.notices[runbook]
	if n == nil {
		n = &notice{}
		b.alerts.notices[runbook] = n
	}
	b.alerts.mu.Unlock()
	n.mu.Lock()
	k := kindPost
	if !n.ref.IsZero() {
		k = kindUpdate
	}
	n.mu.Unlock()
	c.out.add(mark{key: key, conv: channel, kind: k, prio: prioNormal, ready: true,
		send: func(ctx context.Context) error {
			n.mu.Lock()
			r := n.ref
			n.mu.Unlock()
			if !r.IsZero() {
				return c.p.Update(ctx, r, render())
			}
			r, err := c.p.Post(ctx, channel, "", render())
			if err == nil {
				n.mu.Lock()
				n.ref = r
				n.mu.Unlock()
			}
			return err
		}})
}

// notice is a message kept up to date (the queue of a runbook).
type notice struct {
	mu  sync.Mutex
	ref MessageRef
}

// offerRun replies with a dry-run summary and a Run button. The button
// carries the run's command line: the click is parsed and authorized like
// a typed /runbook run, and started in the alert's thread.
func (b *Bot) offerRun(ctx context.Context, c *chat, a alerts.Alert, d alerts.Decision, channel, thread string) {
	id := uuid.NewString()[:12]
	line := "run " + d.Runbook
	keys := make([]string, 0, len(d.Params))
	for k := range d.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := engine.Stringify(d.Params[k])
		if strings.ContainsAny(v, " \t\"") {
			v = strconv.Quote(v)
		}
		line += " " + k + "=" + v
	}
	b.alerts.mu.Lock()
	b.alerts.pending[id] = pendingRun{alert: a, decision: d, channel: channel, thread: thread, line: line}
	b.alerts.mu.Unlock()
	text := R(Sym(StatusInfo), Txt(" "), Bold(a.Name), Txt(" maps to "), Code(d.Runbook), Txt(" with "))
	text = append(text, formatParams(d.Params)...)
	text = append(text, Txt("."))
	if rb, err := b.eng.Catalog().Lookup(d.Runbook); err == nil {
		if plan, err := engine.DryRun(ctx, b.eng.Registry(), rb, d.Params, nil); err == nil {
			text = append(text, BR(), Txt("It would run "))
			for i, s := range plan.Steps {
				if i > 0 {
					text = append(text, Txt(" → "))
				}
				text = append(text, Code(s.Name))
				if s.ApprovalRequired {
					text = append(text, Txt(" "), Sym(StatusLock))
				}
			}
			text = append(text, Txt(fmt.Sprintf(" (about %ds, %d approval(s)).", plan.EstimatedSeconds, plan.ApprovalsNeeded)))
		}
	}
	msg := Message{Summary: text, Blocks: []Block{
		{Kind: KindSection, ID: "offer:" + id, Text: text},
		{Kind: KindActions, ID: "offer-actions", Buttons: []Button{{ID: buttonOffer + id, Label: "Run " + d.Runbook, Command: line, Style: StylePrimary}}},
	}}
	c.out.add(mark{key: "o|" + id, conv: channel, kind: kindPost, prio: prioNormal, ready: true,
		send: func(ctx context.Context) error {
			ref, err := c.p.Post(ctx, channel, thread, msg)
			if err == nil {
				b.alerts.mu.Lock()
				if p, ok := b.alerts.pending[id]; ok {
					p.ref = ref
					b.alerts.pending[id] = p
				}
				b.alerts.mu.Unlock()
			}
			return err
		}})
}

// runOffer starts an offered runbook for the person who clicked Run: the
// button must be one the bot offered, with the line it offered.
func (b *Bot) runOffer(ctx context.Context, req Request, id string) Response {
	b.alerts.mu.Lock()
	p, ok := b.alerts.pending[id]
	b.alerts.mu.Unlock()
	if !ok || p.line != req.Line {
		if !ok && b.alertsOn() {
			b.log.Warn("audit: refused an unknown or expired offer", "audit", true, "user", req.User, "offer", trim(id, 40))
			return reply(R(Txt("This offer has expired (or was already taken up); use "), Code("/runbook "+trim(req.Line, 200)), Txt(" instead.")))
		}
		return b.refuseClick(ctx, req, "", "offer not issued")
	}
	if r, ok := b.allowed(ctx, req.User, commands.PermExecute, "run runbooks"); !ok {
		return r
	}
	b.alerts.mu.Lock()
	if _, still := b.alerts.pending[id]; !still {
		b.alerts.mu.Unlock()
		return reply(R(Txt("Someone else has just started this.")))
	}
	delete(b.alerts.pending, id)
	b.alerts.mu.Unlock()
	a, d := p.alert, p.decision
	c := b.chats[req.Platform]
	execID, err := b.eng.Start(ctx, engine.StartRequest{Runbook: d.Runbook, Params: d.Params,
		Trigger: engine.TriggerInfo{Type: "alert", Source: a.Source, AlertID: a.Fingerprint, TriggeredBy: req.User,
			Platform: req.Platform, Channel: p.channel, Thread: p.thread, Labels: a.Labels}})
	if err != nil {
		b.alerts.mu.Lock()
		b.alerts.pending[id] = p
		b.alerts.mu.Unlock()
		b.log.Error("cannot start an offered runbook", "runbook", d.Runbook, "err", err)
		return reply(R(Sym(StatusFailed), Txt(" "+d.Runbook+" did not start; the error is in the bot's log.")))
	}
	if c != nil && !p.ref.IsZero() {
		text := R(Sym(StatusRunning), Txt(" "), Code(d.Runbook), Txt(" started by "), Mention(req.User), Txt(" for "), Bold(a.Name), Txt(" ("), Code(execID), Txt(")."))
		ref := p.ref
		c.out.add(mark{key: "o|" + id, conv: p.channel, kind: kindUpdate, prio: prioNormal, ready: true,
			send: func(ctx context.Context) error {
				return c.p.Update(ctx, ref, Message{Summary: text, Blocks: []Block{{Kind: KindSection, ID: "offer:" + id, Text: text}}})
			}})
	}
	return Response{}
}

// alertFinished frees the alert's slot and starts queued alerts.
func (b *Bot) alertFinished(ctx context.Context, execID string) {
	b.alerts.mu.Lock()
	ar, ok := b.alerts.byExec[execID]
	delete(b.alerts.byExec, execID)
	b.alerts.mu.Unlock()
	if !ok {
		return
	}
	tr := b.cfg.Alerts.Tracker
	tr.Finish(ar.fp, ar.runbook, execID, b.eng.Clock().Now())
	drained := tr.Drain(ar.runbook)
	c := b.chats[ar.platform]
	for _, a := range drained {
		ch, ts, _ := tr.Thread(a.Fingerprint)
		for _, d := range b.cfg.Alerts.Matcher.MatchAll(a) {
			if d.Runbook != ar.runbook || !d.AutoTrigger {
				continue
			}
			id, err := b.eng.Start(ctx, engine.StartRequest{Runbook: d.Runbook, Params: d.Params,
				Trigger: engine.TriggerInfo{Type: "alert", Source: a.Source, AlertID: a.Fingerprint, TriggeredBy: "alert:" + a.Name,
					Platform: ar.platform, Channel: ch, Thread: ts, Labels: a.Labels}})
			if err != nil {
				tr.Abort(a.Fingerprint, d.Runbook)
				continue
			}
			tr.Attach(a.Fingerprint, d.Runbook, id)
			b.alerts.mu.Lock()
			b.alerts.byExec[id] = alertRun{fp: a.Fingerprint, runbook: d.Runbook, platform: ar.platform}
			b.alerts.mu.Unlock()
			defer b.finishedEarly(ctx, id)
		}
	}
	if c != nil && (len(drained) > 0 || len(tr.Queued(ar.runbook)) > 0) {
		b.alerts.mu.Lock()
		n := b.alerts.notices[ar.runbook]
		b.alerts.mu.Unlock()
		if n != nil {
			n.mu.Lock()
			ref := n.ref
			n.mu.Unlock()
			if !ref.IsZero() {
				b.queueNotice(c, ar.runbook, ref.Conversation, 0)
			}
		}
	}
}

// restoreAlerts rebuilds the alert bookkeeping from the store after a
// restart: which alerts have running executions (dedup), which finished
// within the cool-down, and which thread each alert lives in (so its
// resolution lands there).
func (b *Bot) restoreAlerts(ctx context.Context) error {
	tr := b.cfg.Alerts.Tracker
	now := b.eng.Clock().Now()
	rows, err := b.eng.Store().History(ctx, engine.HistoryQuery{TriggerType: "alert", Since: now.Add(-24 * time.Hour)})
	if err != nil {
		return err
	}
	// Oldest first, so the newest execution of an alert wins.
	for i := len(rows) - 1; i >= 0; i-- {
		r := rows[i]
		fp := r.Trigger.AlertID
		if fp == "" {
			continue
		}
		if r.Trigger.Channel != "" && r.Trigger.Thread != "" {
			tr.SetThread(fp, r.Trigger.Channel, r.Trigger.Thread)
		}
		if ok, _ := tr.Begin(fp, r.RunbookName, now); !ok {
			continue
		}
		tr.Attach(fp, r.RunbookName, r.ExecutionID)
		if r.Status == engine.StatusFinished {
			end := now
			if r.EndedAt != nil {
				end = *r.EndedAt
			}
			tr.Finish(fp, r.RunbookName, r.ExecutionID, end)
			continue
		}
		b.alerts.mu.Lock()
		b.alerts.byExec[r.ExecutionID] = alertRun{fp: fp, runbook: r.RunbookName, platform: r.Trigger.Platform}
		b.alerts.mu.Unlock()
	}
	return nil
}

// webhookChat is the platform webhook alerts open threads on.
func (b *Bot) webhookChat() *chat {
	if c := b.chats[b.cfg.Alerts.WebhookPlatform]; c != nil {
		return c
	}
	if len(b.order) > 0 {
		return b.order[0]
	}
	return nil
}

// AlertBacklog is how many webhook notifications wait to be handled.
func (b *Bot) AlertBacklog() int { return int(b.alerts.backlog.Load()) }

func (b *Bot) webhookWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case g := <-b.alerts.queue:
			b.HandleAlertGroup(ctx, g)
			b.alerts.backlog.Add(-1)
		}
	}
}

// HandleAlertGroup handles an Alertmanager webhook notification: each
// firing alert gets a thread (a root message in the mapped or default
// channel) unless it already has one; resolutions go to the same thread.
func (b *Bot) HandleAlertGroup(ctx context.Context, g alerts.Group) {
	c := b.webhookChat()
	if !b.alertsOn() || c == nil {
		return
	}
	for _, a := range g.Alerts {
		ch, ts, ok := b.cfg.Alerts.Tracker.Thread(a.Fingerprint)
		if ok {
			b.handleAlert(ctx, c, a, ch, ts)
			continue
		}
		if !a.Firing() {
			if ch, ts, ok := b.resolveLater(a); ok {
				b.handleAlert(ctx, c, a, ch, ts) // the thread was posted meanwhile
			}
			continue
		}
		ch = b.cfg.Alerts.WebhookChannel
		for _, d := range b.cfg.Alerts.Matcher.MatchAll(a) {
			if d.NotifyChannel != "" && ch == "" {
				ch = d.NotifyChannel
			}
			if d.Mapping != nil && d.Mapping.Channel != "" {
				ch = d.Mapping.Channel
			}
		}
		if ch == "" {
			ch = "#alerts"
		}
		b.openAlertThread(c, ch, a)
	}
}

// WebhookHandler receives Alertmanager's webhook_configs (JSON v4) on
// POST; it answers 400 for bodies that are not notifications.
func (b *Bot) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an Alertmanager webhook notification", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		g, err := alerts.ParseWebhook(body)
		if err != nil {
			http.Error(w, "not an Alertmanager notification: "+err.Error(), http.StatusBadRequest)
			return
		}
		// One worker handles notifications in arrival order; a full queue
		// answers 503 so Alertmanager retries instead of anything being lost.
		select {
		case b.alerts.queue <- g:
			b.alerts.backlog.Add(1)
		default:
			http.Error(w, "busy: too many notifications waiting; retry", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "accepted", "alerts": len(g.Alerts)})
	})
}
