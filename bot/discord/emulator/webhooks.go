package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// Webhook is an incoming webhook posting into a channel (what
// Alertmanager's discord_configs webhook_url points at).
type Webhook struct {
	ID        string
	Token     string
	ChannelID string
	GuildID   string
	Name      string
	URL       string // e.g. http://127.0.0.1:PORT/api/webhooks/{id}/{token}
}

type webhook struct {
	Webhook
}

// AddWebhook creates an incoming webhook named name in channelRef and
// returns its URL (valid once the server has a URL).
func (s *Server) AddWebhook(channelRef, name string) (Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.resolveChannelLocked(channelRef)
	if c == nil || c.GuildID == "" {
		return Webhook{}, errorf("no guild channel %q", channelRef)
	}
	return s.addWebhookLocked(c, name), nil
}

func (s *Server) addWebhookLocked(c *channel, name string) Webhook {
	if name == "" {
		name = "Captain Hook"
	}
	w := &webhook{Webhook{ID: s.snowflakeLocked(), Token: randHex(68), ChannelID: c.ID, GuildID: c.GuildID, Name: name}}
	w.URL = s.url + "api/webhooks/" + w.ID + "/" + w.Token
	s.webhooks[w.ID] = w
	s.webhookOrder = append(s.webhookOrder, w.ID)
	s.notifyLocked()
	return w.Webhook
}

// Webhooks returns the incoming webhooks, oldest first.
func (s *Server) Webhooks() []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Webhook
	for _, id := range s.webhookOrder {
		w := s.webhooks[id].Webhook
		w.URL = s.url + "api/webhooks/" + w.ID + "/" + w.Token
		out = append(out, w)
	}
	return out
}

func (s *Server) wireWebhookLocked(w *webhook, withToken bool) obj {
	o := obj{"id": w.ID, "type": 1, "guild_id": w.GuildID, "channel_id": w.ChannelID, "name": w.Name,
		"avatar": nil, "application_id": nil}
	if withToken {
		o["token"] = w.Token
		o["url"] = s.url + "api/webhooks/" + w.ID + "/" + w.Token
	}
	return o
}

// createChannelWebhook serves POST /channels/{c}/webhooks {"name"}.
func (s *Server) createChannelWebhook(c *call) {
	var b struct {
		Name string `json:"name"`
	}
	if !c.decode(&b) {
		return
	}
	var f formErrors
	f.between("name", b.Name, 1, 80)
	if strings.Contains(strings.ToLower(b.Name), "discord") || strings.Contains(strings.ToLower(b.Name), "clyde") {
		f.add("name", "WEBHOOK_INVALID_USERNAME", fmt.Sprintf("Username cannot contain %q", "discord"))
	}
	if e := f.err(); e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.channelLocked()
	if ch == nil {
		return
	}
	w := s.addWebhookLocked(ch, b.Name)
	c.ok(http.StatusOK, s.wireWebhookLocked(s.webhooks[w.ID], true))
}

// webhookTarget is what a /webhooks/{id}/{token} URL designates: an
// incoming webhook, or an interaction's follow-up webhook.
type webhookTarget struct {
	hook *webhook
	in   *interaction
}

// resolveWebhookLocked checks {webhook_id}/{webhook_token}: unknown → 404
// Unknown Webhook; a wrong or expired token → 401 Invalid Webhook Token.
func (c *call) resolveWebhookLocked() (webhookTarget, bool) {
	s := c.s
	id, tok := c.p("webhook_id"), c.p("webhook_token")
	if id == s.opts.ApplicationID {
		in := s.byToken[tok]
		switch {
		case in == nil:
			c.fail(errUnknownWebhook())
		case s.now().Sub(in.createdAt) > s.opts.TokenTTL:
			c.fail(errInvalidWebhookToken())
		case !in.Acked:
			c.fail(errUnknownWebhook())
		default:
			return webhookTarget{in: in}, true
		}
		return webhookTarget{}, false
	}
	w := s.webhooks[id]
	if w == nil {
		c.fail(errUnknownWebhook())
		return webhookTarget{}, false
	}
	if w.Token != tok {
		c.fail(errInvalidWebhookToken())
		return webhookTarget{}, false
	}
	return webhookTarget{hook: w}, true
}

func (s *Server) getWebhookWithToken(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := c.resolveWebhookLocked()
	if !ok {
		return
	}
	if t.hook == nil {
		c.fail(errUnknownWebhook())
		return
	}
	c.ok(http.StatusOK, s.wireWebhookLocked(t.hook, false))
}

// executeWebhook serves POST /webhooks/{id}/{token}: an incoming webhook
// message (204, or 200 + message with ?wait=true), or an interaction
// follow-up (always 200 + message).
func (s *Server) executeWebhook(c *call) {
	var b messageBody
	if !c.decode(&b) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := c.resolveWebhookLocked()
	if !ok {
		return
	}
	if t.in != nil {
		s.followupLocked(c, t.in, &b)
		return
	}
	ct, e := checkMessage(&b, FlagSuppressEmbeds|FlagSuppressNotification, true)
	if e != nil {
		c.fail(e)
		return
	}
	var f formErrors
	if b.Username != "" {
		f.between("username", b.Username, 1, 80)
		if strings.Contains(strings.ToLower(b.Username), "discord") {
			f.add("username", "WEBHOOK_INVALID_USERNAME", fmt.Sprintf("Username cannot contain %q", "discord"))
		}
	}
	if e := f.err(); e != nil {
		c.fail(e)
		return
	}
	ch := s.channels[t.hook.ChannelID]
	if tid := c.query.Get("thread_id"); tid != "" {
		th := s.channels[tid]
		if th == nil || th.ParentID != ch.ID {
			c.fail(errUnknownChannel())
			return
		}
		ch = th
	}
	name := t.hook.Name
	if b.Username != "" {
		name = b.Username
	}
	// Components need an application-owned webhook; Discord drops them here.
	m := &Message{Author: t.hook.ID, WebhookID: t.hook.ID, Username: name, Content: ct.text, Embeds: ct.embeds, Flags: ct.flags}
	m.GuildID = ch.GuildID
	s.applyMentionsLocked(m, ct.mentions)
	s.postLocked(ch, m)
	if c.query.Get("wait") == "true" {
		c.ok(http.StatusOK, s.wireMessageLocked(m))
		return
	}
	c.ok(http.StatusNoContent, nil)
}

// followupLocked creates a follow-up message. The first follow-up after a
// deferred response (type 5) completes the "thinking" @original instead.
func (s *Server) followupLocked(c *call, in *interaction, b *messageBody) {
	ct, e := checkMessage(b, interactionFlags, true)
	if e != nil {
		c.fail(e)
		return
	}
	if in.deferred {
		if m := s.findMessageLocked(in.OriginalID); m != nil {
			ct.hasText, ct.hasEmbeds, ct.hasComponents = true, true, true
			ct.hasFlags = false
			if e := s.applyEditLocked(m, ct); e != nil {
				c.fail(e)
				return
			}
			in.deferred = false
			c.ok(http.StatusOK, s.wireMessageLocked(m))
			return
		}
	}
	m := &Message{Author: s.opts.ApplicationID, ApplicationID: s.opts.ApplicationID, WebhookID: s.opts.ApplicationID,
		InteractionID: in.ID, Content: ct.text, Embeds: ct.embeds, Components: ct.components, Flags: ct.flags}
	if in.OriginalID != "" && m.Flags&FlagEphemeral == 0 {
		m.Type, m.ReferenceID = 19, in.OriginalID
		if orig := s.findMessageLocked(in.OriginalID); orig == nil || orig.VisibleTo != "" {
			m.Type, m.ReferenceID = 0, ""
		}
	}
	m.GuildID = in.GuildID
	s.applyMentionsLocked(m, ct.mentions)
	in.Followups = append(in.Followups, s.storeResponseLocked(in, m))
	s.notifyLocked()
	c.ok(http.StatusOK, s.wireMessageLocked(m))
}

// webhookMessageLocked resolves …/messages/@original or …/messages/{id}
// for a webhook target.
func (c *call) webhookMessageLocked() (*Message, webhookTarget) {
	s := c.s
	t, ok := c.resolveWebhookLocked()
	if !ok {
		return nil, t
	}
	id := c.p("message_id")
	var m *Message
	if t.in != nil {
		if id == "" { // @original
			id = t.in.OriginalID
		} else if id != t.in.OriginalID && !slices.Contains(t.in.Followups, id) {
			id = ""
		}
		if id != "" {
			m = s.findMessageLocked(id)
		}
	} else if id != "" {
		if x := s.findMessageLocked(id); x != nil && x.WebhookID == t.hook.ID {
			m = x
		}
	}
	if m == nil {
		c.fail(errUnknownMessage())
	}
	return m, t
}

func (s *Server) getWebhookMessage(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, _ := c.webhookMessageLocked(); m != nil {
		c.ok(http.StatusOK, s.wireMessageLocked(m))
	}
}

func (s *Server) editWebhookMessage(c *call) {
	var b messageBody
	if !c.decode(&b) {
		return
	}
	ct, e := checkMessage(&b, FlagSuppressEmbeds|FlagComponentsV2, false)
	if e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, t := c.webhookMessageLocked()
	if m == nil {
		return
	}
	if t.hook != nil {
		ct.hasComponents = false // not an application-owned webhook
	}
	if e := s.applyEditLocked(m, ct); e != nil {
		c.fail(e)
		return
	}
	if t.in != nil && m.ID == t.in.OriginalID {
		t.in.deferred = false
	}
	c.ok(http.StatusOK, s.wireMessageLocked(m))
}

func (s *Server) deleteWebhookMessage(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, _ := c.webhookMessageLocked()
	if m == nil {
		return
	}
	if m.VisibleTo != "" {
		list := s.ephemerals[m.VisibleTo]
		for i, x := range list {
			if x == m {
				s.ephemerals[m.VisibleTo] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		s.notifyLocked()
	} else if ch := s.channels[m.ChannelID]; ch != nil {
		s.deleteMessageLocked(ch, m)
	}
	c.ok(http.StatusNoContent, nil)
}

// ExecuteWebhook POSTs body to the incoming webhook's URL over HTTP, as an
// outside sender (Alertmanager) would, and returns the HTTP status.
func (s *Server) ExecuteWebhook(webhookURL string, body []byte) (int, error) {
	resp, err := http.Post(webhookURL, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, errorf("execute webhook: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, errorf("execute webhook: HTTP %d: %s", resp.StatusCode, msg)
	}
	return resp.StatusCode, nil
}

// AlertmanagerPayload builds what Alertmanager's discord_configs POSTs for
// one alert with the default templates: empty content and one embed with
// title "[FIRING:1] name (label values)" or "[RESOLVED] …", a description
// listing labels and annotations, and colour 0x992D22 (firing) or
// 0x2ECC71 (resolved).
func AlertmanagerPayload(alertName string, labels, annotations map[string]string, firing bool) []byte {
	all := map[string]string{"alertname": alertName}
	for k, v := range labels {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var vals []string
	for _, k := range keys {
		if k != "alertname" {
			vals = append(vals, all[k])
		}
	}
	status, color := "FIRING:1", 0x992D22
	if !firing {
		status, color = "RESOLVED", 0x2ECC71
	}
	title := "[" + status + "] " + alertName
	if len(vals) > 0 {
		title += " (" + strings.Join(vals, " ") + ")"
	}
	var d strings.Builder
	if firing {
		d.WriteString("\n**Alerts Firing:**\nLabels:\n")
	} else {
		d.WriteString("\n**Alerts Resolved:**\nLabels:\n")
	}
	for _, k := range keys {
		fmt.Fprintf(&d, " - %s = %s\n", k, all[k])
	}
	d.WriteString("Annotations:\n")
	akeys := make([]string, 0, len(annotations))
	for k := range annotations {
		akeys = append(akeys, k)
	}
	sort.Strings(akeys)
	for _, k := range akeys {
		fmt.Fprintf(&d, " - %s = %s\n", k, annotations[k])
	}
	d.WriteString("Source: http://prometheus.local:9090/graph\n")
	return mustJSON(obj{"content": "", "embeds": []obj{{"title": title, "description": d.String(), "color": color}}})
}

// FireAlert posts AlertmanagerPayload through the first incoming webhook
// (see AddWebhook and SeedDemo), as Alertmanager would.
func (s *Server) FireAlert(alertName string, labels map[string]string, firing bool) error {
	hooks := s.Webhooks()
	if len(hooks) == 0 {
		return errorf("no webhook registered; call AddWebhook or SeedDemo")
	}
	_, err := s.ExecuteWebhook(hooks[0].URL, AlertmanagerPayload(alertName, labels, nil, firing))
	return err
}

// decodeJSON is json.Unmarshal that treats empty input as null.
func decodeJSON(raw []byte, v any) error {
	if len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, v)
}
