package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// webhook is an incoming webhook bound to one channel.
type webhook struct {
	path    string
	channel string // ID, or a name resolved at post time
	botID   string
	appID   string
}

// AddWebhook registers an incoming webhook at URL()+"services/"+path that
// posts into channel (ID or name, with or without '#') and returns its full
// URL. An empty path mints one like Slack's "T…/B…/secret". Call it after
// Start so the URL carries the right host and port.
//
// A POST of Slack's webhook JSON (text, attachments, blocks, username,
// icon_emoji, thread_ts; Alertmanager's slack_configs send exactly this) is
// stored as a bot_message and delivered to the app as a "message" event
// with subtype bot_message. Like a webhook owned by a Slack app, the
// payload's "channel" override is ignored. Answers are Slack's: 200 "ok",
// or 400/404 with a text error (invalid_payload, no_text, no_service,
// channel_not_found …), or 429 with Retry-After.
func (s *Server) AddWebhook(path, channel string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	path = strings.TrimPrefix(strings.TrimPrefix(path, "/"), "services/")
	botID, appID := s.newID("B"), s.newID("A")
	if path == "" {
		path = s.opts.TeamID + "/" + botID + "/" + randHex(24)
	}
	if c := s.resolveChannel(channel); c != nil {
		channel = c.ID
	}
	if _, ok := s.webhooks[path]; !ok {
		s.webhookOrder = append(s.webhookOrder, path)
	}
	s.webhooks[path] = &webhook{path: path, channel: channel, botID: botID, appID: appID}
	return s.url + "services/" + path
}

type webhookBody struct {
	Text        string          `json:"text"`
	Attachments json.RawMessage `json:"attachments"`
	Blocks      json.RawMessage `json:"blocks"`
	Username    string          `json:"username"`
	IconEmoji   string          `json:"icon_emoji"`
	IconURL     string          `json:"icon_url"`
	Channel     string          `json:"channel"`
	ThreadTS    string          `json:"thread_ts"`
}

func webhookError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(code))
}

// handleWebhook serves POST /services/… (incoming webhooks).
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		webhookError(w, http.StatusMethodNotAllowed, "invalid_method")
		return
	}
	raw, err := readPayload(r)
	if err != nil {
		raw = nil
	}
	status, text, retryAfter := s.deliverWebhook(strings.TrimPrefix(r.URL.Path, "/services/"), raw)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	webhookError(w, status, text)
}

// deliverWebhook handles one webhook post and returns the HTTP status, the
// text body and, for 429s, the Retry-After seconds.
func (s *Server) deliverWebhook(path string, raw []byte) (status int, text string, retryAfter int) {
	var body webhookBody
	err := json.Unmarshal(raw, &body)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls["incoming-webhook"]++
	s.notifyLocked()
	wh := s.webhooks[path]
	if wh == nil {
		return http.StatusNotFound, "no_service", 0
	}
	c := s.resolveChannel(wh.channel)
	if c == nil {
		return http.StatusNotFound, "channel_not_found", 0
	}
	if ra, limited := s.rateLimitLocked("incoming-webhook", c.ID); limited {
		return http.StatusTooManyRequests, "rate_limited", ra
	}
	if err != nil {
		return http.StatusBadRequest, "invalid_payload", 0
	}
	content, e := prepareContent(body.Text, body.Blocks, body.Attachments)
	if e != nil {
		return http.StatusBadRequest, e.code, 0
	}
	thread, e := threadRoot(c, body.ThreadTS)
	if e != nil {
		return http.StatusBadRequest, "invalid_thread_ts", 0
	}
	username := body.Username
	if username == "" {
		username = "incoming-webhook"
	}
	m := &Message{
		Channel: c.ID, TS: s.nextTS(), ThreadTS: thread,
		BotID: wh.botID, AppID: wh.appID, Username: username, SubType: "bot_message",
		Text: content.text, Blocks: content.blocks, Attachments: content.attachments,
	}
	s.storeMessage(c, m)
	s.emitMessageEventLocked(c, m)
	s.logf("webhook %s → %s ts=%s", path, c.ID, m.TS)
	return http.StatusOK, "ok", 0
}

// PostWebhook posts payload (Slack webhook JSON) to the webhook registered
// at path (as given to AddWebhook, or its full URL) without going through
// HTTP. It returns nil for Slack's "ok" and the error text otherwise.
func (s *Server) PostWebhook(path string, payload []byte) error {
	path = strings.TrimPrefix(path, s.URL())
	path = strings.TrimPrefix(strings.TrimPrefix(path, "/"), "services/")
	status, text, _ := s.deliverWebhook(path, payload)
	if status != http.StatusOK {
		return fmt.Errorf("slackemu: webhook %s: %d %s", path, status, text)
	}
	return nil
}
