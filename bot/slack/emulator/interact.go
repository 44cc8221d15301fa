package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

func (s *Server) payloadUserLocked(u *User) map[string]any {
	return map[string]any{"id": u.ID, "username": u.Name, "name": u.Name, "team_id": s.opts.TeamID}
}

func (s *Server) userAndChannelLocked(userID, channelRef string) (*User, *channel, error) {
	u := s.users[userID]
	if u == nil {
		return nil, nil, fmt.Errorf("slackemu: no user %q", userID)
	}
	c := s.resolveChannel(channelRef)
	if c == nil {
		return nil, nil, fmt.Errorf("slackemu: no channel %q", channelRef)
	}
	return u, c, nil
}

// SlashCommand sends Options.Command (default "/runbook") with text as
// userID in channelID, as a slash_commands envelope with a response_url and
// a trigger_id. If the app is not connected the envelope waits until it is.
// A text/blocks payload in the app's ack is shown like a response_url reply.
func (s *Server) SlashCommand(userID, channelID, text string) error {
	return s.SendCommand(userID, channelID, s.opts.Command, text)
}

// SendCommand is SlashCommand for any command name (e.g. "/deploy").
func (s *Server) SendCommand(userID, channelID, command, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, c, err := s.userAndChannelLocked(userID, channelID)
	if err != nil {
		return err
	}
	ru := &responseURL{user: u.ID, channel: c.ID}
	payload := map[string]any{
		"token":                 verificationToken,
		"team_id":               s.opts.TeamID,
		"team_domain":           s.opts.TeamDomain,
		"channel_id":            c.ID,
		"channel_name":          c.Name,
		"user_id":               u.ID,
		"user_name":             u.Name,
		"command":               command,
		"text":                  text,
		"api_app_id":            s.opts.AppID,
		"is_enterprise_install": "false",
		"response_url":          s.newResponseURL("commands", ru),
		"trigger_id":            s.newTriggerID(u.ID),
	}
	s.enqueueLocked("slash_commands", payload, true, func(ack json.RawMessage) {
		if len(ack) == 0 {
			return
		}
		var msg respMsg
		if json.Unmarshal(ack, &msg) != nil || (msg.Text == "" && isEmptyJSONList(msg.Blocks) && isEmptyJSONList(msg.Attachments)) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if e := s.respondLocked(ru, msg); e != nil {
			s.logf("slash command ack payload rejected: %s %v", e.code, e.messages)
		}
	})
	s.notifyLocked()
	return nil
}

// findAction finds the element with actionID in a blocks array (actions
// elements and section accessories) and returns its block_id and element.
func findAction(blocks json.RawMessage, actionID string) (string, map[string]any) {
	var bs []map[string]any
	if decodeJSON(blocks, &bs) != nil {
		return "", nil
	}
	for _, b := range bs {
		bid, _ := b["block_id"].(string)
		if acc, ok := b["accessory"].(map[string]any); ok && acc["action_id"] == actionID {
			return bid, acc
		}
		els, _ := b["elements"].([]any)
		if b["type"] != "actions" {
			continue
		}
		for _, e := range els {
			if em, ok := e.(map[string]any); ok && em["action_id"] == actionID {
				return bid, em
			}
		}
	}
	return "", nil
}

// ClickButton clicks, as userID, the element with actionID in the message
// channelID/messageTS (a channel message, or one of the user's ephemerals).
// It sends a block_actions interaction carrying the stored block_id, the
// button's value, the container, the message, a trigger_id and a response_url.
func (s *Server) ClickButton(userID, channelID, messageTS, actionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, c, err := s.userAndChannelLocked(userID, channelID)
	if err != nil {
		return err
	}
	var (
		blocks    json.RawMessage
		wire      map[string]any
		threadTS  string
		ephemeral bool
	)
	if m := c.byTS[messageTS]; m != nil {
		blocks, wire, threadTS = m.Blocks, s.wireMessageLocked(c, m), m.ThreadTS
	} else if e := s.findEphemeralLocked(u.ID, c.ID, messageTS); e != nil {
		blocks, threadTS, ephemeral = e.Blocks, e.ThreadTS, true
	} else {
		return fmt.Errorf("slackemu: no message %s in %s", messageTS, c.ID)
	}
	blockID, el := findAction(blocks, actionID)
	if el == nil {
		return fmt.Errorf("slackemu: message %s has no element with action_id %q", messageTS, actionID)
	}
	action := map[string]any{"action_id": actionID, "block_id": blockID, "type": el["type"], "action_ts": fmtTS(s.now().UnixMicro())}
	for _, k := range []string{"text", "value", "style", "url"} {
		if v, ok := el[k]; ok {
			action[k] = v
		}
	}
	if t, ok := action["text"].(map[string]any); ok {
		if _, ok := t["emoji"]; !ok && t["type"] == "plain_text" {
			t2 := map[string]any{"emoji": true}
			for k, v := range t {
				t2[k] = v
			}
			action["text"] = t2
		}
	}
	container := map[string]any{"type": "message", "message_ts": messageTS, "channel_id": c.ID, "is_ephemeral": ephemeral}
	if threadTS != "" {
		container["thread_ts"] = threadTS
	}
	ru := &responseURL{user: u.ID, channel: c.ID, msgTS: messageTS, threadTS: threadTS, ephemeral: ephemeral}
	payload := map[string]any{
		"type":                  "block_actions",
		"user":                  s.payloadUserLocked(u),
		"api_app_id":            s.opts.AppID,
		"token":                 verificationToken,
		"container":             container,
		"trigger_id":            s.newTriggerID(u.ID),
		"team":                  map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"channel":               map[string]any{"id": c.ID, "name": c.Name},
		"state":                 map[string]any{"values": map[string]any{}},
		"response_url":          s.newResponseURL("actions", ru),
		"actions":               []any{action},
	}
	if wire != nil {
		payload["message"] = wire
	}
	s.enqueueLocked("interactive", payload, false, nil)
	s.notifyLocked()
	return nil
}

func (s *Server) findEphemeralLocked(user, channel, ts string) *Ephemeral {
	for i := range s.ephemerals[user] {
		if e := &s.ephemerals[user][i]; e.Channel == channel && e.TS == ts {
			return e
		}
	}
	return nil
}

// PostMessage posts text as a human user (top level) and sends the app a
// "message" event. It returns the new message's ts.
func (s *Server) PostMessage(userID, channelID, text string) (string, error) {
	return s.PostReply(userID, channelID, "", text)
}

// PostReply is PostMessage in the thread rooted at threadTS ("" = top level).
func (s *Server) PostReply(userID, channelID, threadTS, text string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, c, err := s.userAndChannelLocked(userID, channelID)
	if err != nil {
		return "", err
	}
	root, e := threadRoot(c, threadTS)
	if e != nil {
		return "", fmt.Errorf("slackemu: %s", e.code)
	}
	m := &Message{Channel: c.ID, TS: s.nextTS(), ThreadTS: root, User: u.ID, Text: text}
	s.storeMessage(c, m)
	s.emitMessageEventLocked(c, m)
	return m.TS, nil
}

// respMsg is a response_url body (slack.Msg / slack.WebhookMessage).
type respMsg struct {
	Text            string          `json:"text"`
	Blocks          json.RawMessage `json:"blocks"`
	Attachments     json.RawMessage `json:"attachments"`
	ThreadTS        string          `json:"thread_ts"`
	ResponseType    string          `json:"response_type"`
	ReplaceOriginal bool            `json:"replace_original"`
	DeleteOriginal  bool            `json:"delete_original"`
}

// respondLocked applies a response_url message. Caller holds s.mu.
func (s *Server) respondLocked(r *responseURL, msg respMsg) *apiErr {
	c := s.channels[r.channel]
	if c == nil {
		return &apiErr{code: "channel_not_found"}
	}
	if msg.DeleteOriginal && r.msgTS != "" {
		if r.ephemeral {
			list := s.ephemerals[r.user]
			for i := range list {
				if list[i].Channel == c.ID && list[i].TS == r.msgTS {
					s.ephemerals[r.user] = append(list[:i:i], list[i+1:]...)
					break
				}
			}
		} else if m := c.byTS[r.msgTS]; m != nil {
			s.deleteMessageLocked(c, m)
		}
		s.notifyLocked()
		return nil
	}
	body, e := prepareContent(msg.Text, msg.Blocks, msg.Attachments)
	if e != nil {
		return e
	}
	if msg.ReplaceOriginal && r.msgTS != "" {
		if r.ephemeral {
			if eph := s.findEphemeralLocked(r.user, c.ID, r.msgTS); eph != nil {
				eph.Text, eph.Blocks, eph.Attachments = body.text, body.blocks, body.attachments
			}
		} else if m := c.byTS[r.msgTS]; m != nil {
			s.applyEditLocked(m, body)
		} else {
			return &apiErr{code: "message_not_found"}
		}
		s.notifyLocked()
		return nil
	}
	thread := msg.ThreadTS
	if thread == "" {
		thread = r.threadTS
	}
	if msg.ResponseType == "in_channel" {
		root, e := threadRoot(c, thread)
		if e != nil {
			return e
		}
		m := &Message{
			Channel: c.ID, TS: s.nextTS(), ThreadTS: root,
			User: s.opts.BotUserID, BotID: s.opts.BotID, AppID: s.opts.AppID,
			Text: body.text, Blocks: body.blocks, Attachments: body.attachments,
		}
		s.storeMessage(c, m)
		return nil
	}
	s.addEphemeralLocked(Ephemeral{
		Channel: c.ID, User: r.user, TS: s.nextTS(), ThreadTS: thread,
		Text: body.text, Blocks: body.blocks, Attachments: body.attachments,
	})
	return nil
}

// handleResponseURL serves POST /hooks/{commands|actions}/… (response_url).
// Like Slack, a response_url takes up to 5 posts within 30 minutes (on
// Options.Now); later posts get 404 {"ok":false,"error":"used_url"} or
// "expired_url".
func (s *Server) handleResponseURL(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, "/hooks/")
	raw, err := readPayload(r)
	var msg respMsg
	if err == nil {
		err = json.Unmarshal(raw, &msg)
	}
	s.mu.Lock()
	s.calls["response_url"]++
	ru := s.responseURLs[key]
	var e *apiErr
	status := http.StatusOK
	switch {
	case ru == nil:
		e, status = &apiErr{code: "no_service"}, http.StatusNotFound
	case s.now().Sub(ru.created) > responseURLTTL:
		e, status = &apiErr{code: "expired_url"}, http.StatusNotFound
	case ru.uses >= responseURLUses:
		e, status = &apiErr{code: "used_url"}, http.StatusNotFound
	case err != nil:
		e, status = &apiErr{code: "invalid_payload"}, http.StatusBadRequest
	default:
		ru.uses++
		if e = s.respondLocked(ru, msg); e != nil {
			status = http.StatusBadRequest
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	if e != nil {
		writeJSON(w, status, errBody(e))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// readPayload returns a JSON body, or the "payload" field of a form body.
func readPayload(r *http.Request) ([]byte, error) {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		return []byte(r.PostForm.Get("payload")), nil
	}
	return io.ReadAll(io.LimitReader(r.Body, 4<<20))
}
