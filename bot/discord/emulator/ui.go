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

// handleUIPage serves the playground: channels and threads, messages with
// embeds and clickable components, a user picker, a composer for messages
// and slash commands, modals the bot opened, and an alert form. It polls
// /emu/state.
func (s *Server) handleUIPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = uiTemplate.Execute(w, map[string]any{"Guild": s.opts.GuildName, "Bot": s.opts.BotName})
}

type uiMessage struct {
	ID         string          `json:"id"`
	Channel    string          `json:"channel"`
	Author     string          `json:"author"`
	AuthorID   string          `json:"author_id"`
	Bot        bool            `json:"bot"`
	Webhook    bool            `json:"webhook"`
	Content    string          `json:"content"`
	Embeds     json.RawMessage `json:"embeds,omitempty"`
	Components json.RawMessage `json:"components,omitempty"`
	Flags      int             `json:"flags"`
	Edits      int             `json:"edits"`
	Thread     string          `json:"thread,omitempty"`
	VisibleTo  string          `json:"visible_to,omitempty"`
	Time       string          `json:"time"`
}

// uiStateLocked snapshots what the page shows. Caller holds s.mu.
func (s *Server) uiStateLocked() map[string]any {
	conv := func(m *Message) uiMessage {
		um := uiMessage{ID: m.ID, Channel: m.ChannelID, AuthorID: m.Author, Content: m.Content, Embeds: m.Embeds, Components: m.Components,
			Flags: m.Flags, Edits: m.Edits, Thread: m.ThreadID, VisibleTo: m.VisibleTo, Time: m.Timestamp.Format("15:04:05")}
		switch u := s.users[m.Author]; {
		case m.WebhookID != "" && m.ApplicationID == "":
			um.Author, um.Bot, um.Webhook = m.Username, true, true
		case u != nil:
			um.Author, um.Bot = u.Username, u.Bot
			if u.GlobalName != "" {
				um.Author = u.GlobalName
			}
		default:
			um.Author = m.Author
		}
		return um
	}
	users := []map[string]any{}
	for _, id := range s.userOrder {
		u := s.users[id]
		users = append(users, map[string]any{"id": u.ID, "name": u.Username, "global_name": u.GlobalName, "bot": u.Bot,
			"roles": s.memberRolesLocked(s.guildID, u.ID)})
	}
	chans := []map[string]any{}
	for _, id := range s.chanOrder {
		c := s.channels[id]
		if c.Type == ChannelDM {
			continue
		}
		msgs := []uiMessage{}
		for _, m := range c.msgs {
			msgs = append(msgs, conv(m))
		}
		chans = append(chans, map[string]any{"id": c.ID, "name": c.Name, "type": c.Type, "parent": c.ParentID, "messages": msgs})
	}
	eph := []uiMessage{}
	for _, uid := range sortedKeys(s.ephemerals) {
		for _, m := range s.ephemerals[uid] {
			eph = append(eph, conv(m))
		}
	}
	modals := []map[string]any{}
	for _, m := range s.modals {
		if m.Open {
			modals = append(modals, map[string]any{"id": m.ID, "user": m.User, "custom_id": m.CustomID, "title": m.Title, "components": m.Components})
		}
	}
	failed := []map[string]any{}
	for _, id := range s.intOrder {
		if in := s.interactions[id]; in.Failed {
			failed = append(failed, map[string]any{"id": in.ID, "user": in.User, "channel": in.ChannelID,
				"what": strings.TrimSpace(in.CommandName + " " + in.CustomID)})
		}
	}
	var cmds []string
	for _, id := range s.commandOrder {
		if c := s.commands[id]; c.Type == 1 {
			cmds = append(cmds, "/"+c.Name)
		}
	}
	connected := false
	for _, sess := range s.gw.sessions {
		connected = connected || sess.conn != nil
	}
	return map[string]any{
		"guild": s.opts.GuildName, "bot_id": s.opts.ApplicationID, "users": users, "channels": chans,
		"ephemerals": eph, "modals": modals, "failed": failed, "commands": cmds,
		"connected": connected, "rate_limited": s.rateLimited, "rate_limiting": !s.limiter.disabled,
		"webhooks": len(s.webhookOrder), "interactions": len(s.intOrder),
	}
}

type uiRequest struct {
	User     string            `json:"user"`
	Channel  string            `json:"channel"`
	Text     string            `json:"text"`
	Message  string            `json:"message"`
	CustomID string            `json:"custom_id"`
	Values   []string          `json:"values"`
	Modal    string            `json:"modal"`
	Inputs   map[string]string `json:"inputs"`
	Enabled  bool              `json:"enabled"`
	Labels   string            `json:"labels"`
	Firing   bool              `json:"firing"`
}

// handleUIAPI serves the page's JSON endpoints under /emu/.
func (s *Server) handleUIAPI(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.URL.Path, "/emu/")
	if op == "state" {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, s.Snapshot())
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
		_, err = s.RunCommand(q.User, q.Channel, q.Text)
	case "message":
		_, err = s.PostMessage(q.User, q.Channel, q.Text)
	case "click":
		_, err = s.ClickButton(q.User, q.Message, q.CustomID)
	case "select":
		_, err = s.SelectOptions(q.User, q.Message, q.CustomID, q.Values...)
	case "submit":
		_, err = s.SubmitModal(q.User, q.Modal, q.Inputs)
	case "close":
		err = s.CloseModal(q.User, q.Modal)
	case "alert":
		err = s.FireAlert(q.Text, parseLabels(q.Labels), q.Firing)
	case "drop":
		s.DropConnections()
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
