package emulator

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

//go:embed ui.html
var uiHTML string

var uiTemplate = template.Must(template.New("ui").Parse(uiHTML))

// handleUIPage serves the playground page: channels, messages with
// threads, clickable buttons, a user picker, a composer for messages and
// slash commands, and modals the bot opened. It polls /emu/state.
func (s *Server) handleUIPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = uiTemplate.Execute(w, map[string]any{
		"Team": s.opts.TeamName, "Command": s.opts.Command, "Bot": s.opts.BotName,
		"Alert": DemoAlert, "AlertLabels": DemoAlertLabels,
	})
}

// uiMessage is a message as the page shows it. HTML is Text rendered as
// Slack renders mrkdwn; Blocks and Attachments carry their renderings too
// (see htmlBlocks, htmlAttachments).
type uiMessage struct {
	TS            string          `json:"ts"`
	ThreadTS      string          `json:"thread_ts,omitempty"`
	User          string          `json:"user,omitempty"`
	Author        string          `json:"author"`
	IsBot         bool            `json:"is_bot"`
	Text          string          `json:"text"`
	HTML          string          `json:"html"`
	Blocks        json.RawMessage `json:"blocks,omitempty"`
	Attachments   json.RawMessage `json:"attachments,omitempty"`
	Edits         int             `json:"edits"`
	Reactions     map[string]int  `json:"reactions,omitempty"`
	ReactionsHTML string          `json:"reactions_html,omitempty"`
	Replies       []uiMessage     `json:"replies,omitempty"`
	Ephemeral     bool            `json:"ephemeral,omitempty"`
}

type uiView struct {
	ID     string            `json:"id"`
	User   string            `json:"user"`
	Open   bool              `json:"open"`
	Hash   string            `json:"hash"`
	Errors map[string]string `json:"errors,omitempty"`
	View   json.RawMessage   `json:"view"`
}

// uiStateLocked snapshots what the page shows. Caller holds s.mu.
func (s *Server) uiStateLocked() map[string]any {
	author := func(m *Message) (string, bool) {
		if m.Username != "" {
			return m.Username, true
		}
		if u := s.users[m.User]; u != nil {
			return u.Name, u.IsBot || m.BotID != ""
		}
		return m.User, m.BotID != ""
	}
	dir := s.directoryLocked()
	conv := func(m *Message) uiMessage {
		a, bot := author(m)
		um := uiMessage{TS: m.TS, ThreadTS: m.ThreadTS, User: m.User, Author: a, IsBot: bot, Text: m.Text,
			HTML: renderMrkdwn(m.Text, dir), Blocks: htmlBlocks(m.Blocks, dir),
			Attachments: htmlAttachments(m.Attachments, dir), Edits: m.Edits}
		if len(m.Reactions) > 0 {
			um.Reactions = map[string]int{}
			for k, v := range m.Reactions {
				um.Reactions[k] = len(v)
			}
			um.ReactionsHTML = htmlReactions(m.Reactions)
		}
		return um
	}
	var users []map[string]any
	for _, id := range s.userOrder {
		u := s.users[id]
		users = append(users, map[string]any{"id": u.ID, "name": u.Name, "real_name": u.RealName, "is_bot": u.IsBot})
	}
	var chans []map[string]any
	for _, id := range s.chanOrder {
		c := s.channels[id]
		msgs := []uiMessage{}
		for _, m := range c.msgs {
			if m.ThreadTS != "" {
				continue
			}
			um := conv(m)
			for _, ts := range m.Replies {
				if r := c.byTS[ts]; r != nil {
					um.Replies = append(um.Replies, conv(r))
				}
			}
			msgs = append(msgs, um)
		}
		chans = append(chans, map[string]any{"id": c.ID, "name": c.Name, "messages": msgs})
	}
	eph := map[string][]map[string]any{}
	for user, list := range s.ephemerals {
		for _, e := range list {
			eph[user] = append(eph[user], map[string]any{
				"channel": e.Channel, "ts": e.TS, "thread_ts": e.ThreadTS, "text": e.Text,
				"html": renderMrkdwn(e.Text, dir), "blocks": htmlBlocks(e.Blocks, dir),
				"attachments": htmlAttachments(e.Attachments, dir),
			})
		}
	}
	var views []uiView
	for _, id := range s.viewOrder {
		v := s.views[id]
		if v.Open {
			views = append(views, uiView{ID: v.ID, User: v.User, Open: v.Open, Hash: v.Hash, Errors: v.Errors, View: htmlBlocks(v.JSON, dir)})
		}
	}
	return map[string]any{
		"team": s.opts.TeamName, "bot_user_id": s.opts.BotUserID, "command": s.opts.Command,
		"users": users, "channels": chans, "ephemerals": eph, "views": views,
		"connections": len(s.sock.conns), "pending": len(s.sock.pending) + len(s.sock.outbox),
		"acks": len(s.sock.acks), "timeouts": s.sock.timeouts, "rate_limited": s.rateLimited,
		"protocol_errors": len(s.sock.errors),
		"rate_limiting":   !s.limiter.disabled, "webhooks": len(s.webhookOrder),
	}
}

type uiRequest struct {
	User     string                       `json:"user"`
	Channel  string                       `json:"channel"`
	Text     string                       `json:"text"`
	ThreadTS string                       `json:"thread_ts"`
	TS       string                       `json:"ts"`
	ActionID string                       `json:"action_id"`
	ViewID   string                       `json:"view_id"`
	Values   map[string]map[string]string `json:"values"`
	Enabled  bool                         `json:"enabled"`
	Labels   string                       `json:"labels"`
	Firing   bool                         `json:"firing"`
}

// handleUIAPI serves the page's JSON endpoints under /emu/.
func (s *Server) handleUIAPI(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.URL.Path, "/emu/")
	if op == "state" {
		s.mu.Lock()
		body := mustJSON(s.uiStateLocked())
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var q uiRequest
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "bad json: " + err.Error()})
		return
	}
	var err error
	switch op {
	case "command":
		cmd, text := s.opts.Command, strings.TrimSpace(q.Text)
		if strings.HasPrefix(text, "/") {
			cmd, text, _ = strings.Cut(text, " ")
		}
		err = s.SendCommand(q.User, q.Channel, cmd, strings.TrimSpace(text))
	case "message":
		_, err = s.PostReply(q.User, q.Channel, q.ThreadTS, q.Text)
	case "click":
		err = s.ClickButton(q.User, q.Channel, q.TS, q.ActionID)
	case "submit":
		err = s.SubmitView(q.User, q.ViewID, q.Values)
	case "close":
		err = s.CloseView(q.User, q.ViewID)
	case "alert":
		err = s.FireAlert(q.Text, parseLabels(q.Labels), q.Firing)
	case "disconnect":
		s.Disconnect()
	case "ratelimit":
		s.SetRateLimiting(q.Enabled)
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	if err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}
