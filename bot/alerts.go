package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
}

// ChannelMessage is a message posted in a channel the bot can see.
type ChannelMessage struct {
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
	fp, runbook string
}

type pendingRun struct {
	alert    alerts.Alert
	decision alerts.Decision
	channel  string
	thread   string
}

// alertState is the bot's alert bookkeeping.
type alertState struct {
	queue    chan alerts.Group
	backlog  atomic.Int64
	mu       sync.Mutex
	byExec   map[string]alertRun
	pending  map[string]pendingRun
	channels map[string]bool
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
	for _, a := range as {
		b.handleAlert(ctx, a, m.Channel, m.TS)
	}
}

// reply posts a one-off message in a thread.
func (b *Bot) reply(channel, thread, text string) {
	msg := Message{Text: text, Blocks: []Block{{Kind: KindSection, Text: trim(text, 2900)}}}
	b.out.mark(item{key: "r:" + uuid.NewString(), oneShot: true, channel: channel, threadTS: func() string { return thread }, render: func() Message { return msg }})
}

func (b *Bot) handleAlert(ctx context.Context, a alerts.Alert, channel, thread string) {
	tr := b.cfg.Alerts.Tracker
	now := b.eng.Clock().Now()
	if !a.Firing() {
		if ch, ts, ok := tr.Thread(a.Fingerprint); ok {
			channel, thread = ch, ts
		}
		if thread != "" {
			b.reply(channel, thread, ":white_check_mark: *Resolved:* "+a.Summary())
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
				b.reply(channel, thread, fmt.Sprintf(":mag: No runbook is mapped to *%s*. Related: %s", a.Name, "`"+strings.Join(d.Suggestions, "`, `")+"`"))
			}
		case d.Skip != "":
			b.reply(channel, thread, fmt.Sprintf(":information_source: Not running `%s`: %s", d.Runbook, d.Skip))
		case !d.AutoTrigger:
			b.offerRun(ctx, a, d, channel, thread)
		default:
			b.autoRun(ctx, a, d, channel, thread, now)
		}
	}
}

func (b *Bot) autoRun(ctx context.Context, a alerts.Alert, d alerts.Decision, channel, thread string, now time.Time) {
	tr := b.cfg.Alerts.Tracker
	ok, existing := tr.Begin(a.Fingerprint, d.Runbook, now)
	if !ok {
		if existing == "" {
			n := tr.Queue(d.Runbook, a)
			b.queueNotice(d.Runbook, channel, n)
		}
		return // the same alert is already being handled (or cooling down)
	}
	id, err := b.eng.Start(ctx, engine.StartRequest{Runbook: d.Runbook, Params: d.Params,
		Trigger: engine.TriggerInfo{Type: "alert", Source: a.Source, AlertID: a.Fingerprint, TriggeredBy: "alert:" + a.Name,
			Platform: "slack", Channel: channel, Thread: thread, Labels: a.Labels}})
	if err != nil {
		tr.Abort(a.Fingerprint, d.Runbook)
		b.reply(channel, thread, fmt.Sprintf(":x: Could not start `%s`: %v", d.Runbook, err))
		return
	}
	tr.Attach(a.Fingerprint, d.Runbook, id)
	b.alerts.mu.Lock()
	b.alerts.byExec[id] = alertRun{fp: a.Fingerprint, runbook: d.Runbook}
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

// queueNotice keeps one message per runbook saying how many alerts wait
// for a free slot, instead of one message per alert.
func (b *Bot) queueNotice(runbook, channel string, n int) {
	key := "q:" + runbook
	b.out.mark(item{key: key, channel: channel, threadTS: func() string { return "" }, render: func() Message {
		q := b.cfg.Alerts.Tracker.Queued(runbook)
		var names []string
		for i, a := range q {
			if i == 10 {
				names = append(names, fmt.Sprintf("… and %d more", len(q)-10))
				break
			}
			names = append(names, a.Summary())
		}
		text := fmt.Sprintf(":hourglass: *%d alert(s) queued* for `%s` (at most %d run at once):\n• %s", len(q), runbook, b.cfg.Alerts.Tracker.Limit(runbook), strings.Join(names, "\n• "))
		if len(q) == 0 {
			text = fmt.Sprintf(":white_check_mark: No alerts queued for `%s`.", runbook)
		}
		return Message{Text: text, Blocks: []Block{{Kind: KindSection, ID: "queue:" + runbook, Text: trim(text, 2900)}}}
	}})
	_ = n
}

// offerRun replies with a dry-run summary and a Run button; the click is
// authorized like a typed /runbook run.
func (b *Bot) offerRun(ctx context.Context, a alerts.Alert, d alerts.Decision, channel, thread string) {
	id := uuid.NewString()[:12]
	b.alerts.mu.Lock()
	b.alerts.pending[id] = pendingRun{alert: a, decision: d, channel: channel, thread: thread}
	b.alerts.mu.Unlock()
	summary := ""
	if rb, err := b.eng.Catalog().Lookup(d.Runbook); err == nil {
		if plan, err := engine.DryRun(ctx, b.eng.Registry(), rb, d.Params, nil); err == nil {
			var steps []string
			for _, s := range plan.Steps {
				mark := ""
				if s.ApprovalRequired {
					mark = " :lock:"
				}
				steps = append(steps, "`"+s.Name+"`"+mark)
			}
			summary = fmt.Sprintf("\nIt would run %s (about %ds, %d approval(s)).", strings.Join(steps, " → "), plan.EstimatedSeconds, plan.ApprovalsNeeded)
		}
	}
	text := fmt.Sprintf(":point_right: *%s* maps to `%s` with %s.%s", a.Name, d.Runbook, formatParams(d.Params), summary)
	msg := Message{Text: text, Blocks: []Block{
		{Kind: KindSection, ID: "offer", Text: trim(text, 2900)},
		{Kind: KindActions, ID: "offer-actions", Buttons: []Button{{Label: "Run " + d.Runbook, ActionID: "alert:run", Value: id, Style: "primary"}}},
	}}
	b.out.mark(item{key: "o:" + id, channel: channel, threadTS: func() string { return thread }, render: func() Message { return msg }})
}

// runOffered starts an offered runbook for the person who clicked Run.
func (b *Bot) runOffered(ctx context.Context, userID, id string) *Reply {
	if r := b.allowed(ctx, userID, commands.PermExecute, "run runbooks"); r != nil {
		return r
	}
	b.alerts.mu.Lock()
	p, ok := b.alerts.pending[id]
	delete(b.alerts.pending, id)
	b.alerts.mu.Unlock()
	if !ok {
		return text("This offer has already been taken up (or the bot restarted); use `/runbook run` instead.")
	}
	a, d := p.alert, p.decision
	execID, err := b.eng.Start(ctx, engine.StartRequest{Runbook: d.Runbook, Params: d.Params,
		Trigger: engine.TriggerInfo{Type: "alert", Source: a.Source, AlertID: a.Fingerprint, TriggeredBy: userID,
			Platform: "slack", Channel: p.channel, Thread: p.thread, Labels: a.Labels}})
	if err != nil {
		b.alerts.mu.Lock()
		b.alerts.pending[id] = p
		b.alerts.mu.Unlock()
		return text(":x: " + err.Error())
	}
	b.out.mark(item{key: "o:" + id, channel: p.channel, render: func() Message {
		s := fmt.Sprintf(":arrow_forward: `%s` started by %s for *%s* (`%s`).", d.Runbook, user(userID), a.Name, execID)
		return Message{Text: s, Blocks: []Block{{Kind: KindSection, ID: "offer", Text: s}}}
	}})
	return nil
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
	for _, a := range drained {
		ch, ts, _ := tr.Thread(a.Fingerprint)
		for _, d := range b.cfg.Alerts.Matcher.MatchAll(a) {
			if d.Runbook != ar.runbook || !d.AutoTrigger {
				continue
			}
			id, err := b.eng.Start(ctx, engine.StartRequest{Runbook: d.Runbook, Params: d.Params,
				Trigger: engine.TriggerInfo{Type: "alert", Source: a.Source, AlertID: a.Fingerprint, TriggeredBy: "alert:" + a.Name, Platform: "slack", Channel: ch, Thread: ts, Labels: a.Labels}})
			if err != nil {
				tr.Abort(a.Fingerprint, d.Runbook)
				continue
			}
			tr.Attach(a.Fingerprint, d.Runbook, id)
			b.alerts.mu.Lock()
			b.alerts.byExec[id] = alertRun{fp: a.Fingerprint, runbook: d.Runbook}
			b.alerts.mu.Unlock()
			defer b.finishedEarly(ctx, id)
		}
	}
	if len(drained) > 0 || len(tr.Queued(ar.runbook)) > 0 {
		b.out.mark(item{key: "q:" + ar.runbook})
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
		b.alerts.byExec[r.ExecutionID] = alertRun{fp: fp, runbook: r.RunbookName}
		b.alerts.mu.Unlock()
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
	if !b.alertsOn() {
		return
	}
	for _, a := range g.Alerts {
		ch, ts, ok := b.cfg.Alerts.Tracker.Thread(a.Fingerprint)
		if !ok {
			if !a.Firing() {
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
			text := fmt.Sprintf(":fire: *FIRING:* %s", a.Summary())
			if a.GeneratorURL != "" {
				text += fmt.Sprintf(" (<%s|source>)", a.GeneratorURL)
			}
			var err error
			ch, ts, err = b.postNow(ctx, ch, "", Message{Text: text, Blocks: []Block{{Kind: KindSection, ID: "alert:" + a.Fingerprint, Text: text}}})
			if err != nil {
				b.log.Error("cannot post alert thread", "alert", a.Name, "err", err)
				continue
			}
			b.cfg.Alerts.Tracker.SetThread(a.Fingerprint, ch, ts)
		}
		b.handleAlert(ctx, a, ch, ts)
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
