package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// apiErr is an {"ok":false} answer.
type apiErr struct {
	code     string
	messages []string // response_metadata.messages
}

// params holds request parameters from a form, a query string or a JSON
// body, each as a JSON value (form values become JSON strings).
type params map[string]json.RawMessage

// str returns a parameter as a string ("" when absent); numbers and
// booleans are returned as written.
func (p params) str(k string) string {
	raw, ok := p[k]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if t := strings.TrimSpace(string(raw)); t != "null" {
		return t
	}
	return ""
}

func (p params) has(k string) bool { _, ok := p[k]; return ok }

// json returns a structured parameter (blocks, attachments, view). A JSON
// string holding JSON (as slack-go sends in forms) is unwrapped.
func (p params) json(k string) json.RawMessage {
	raw, ok := p[k]
	if !ok {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return json.RawMessage(s)
	}
	return raw
}

func (p params) bool(k string) bool {
	v := p.str(k)
	return v == "true" || v == "1"
}

type apiReq struct {
	method string
	p      params
	token  string
}

type apiHandler struct {
	auth string // "bot" or "app"
	fn   func(s *Server, q *apiReq) (map[string]any, *apiErr)
}

var apiMethods map[string]apiHandler

func init() {
	bot := func(fn func(*Server, *apiReq) (map[string]any, *apiErr)) apiHandler {
		return apiHandler{auth: "bot", fn: fn}
	}
	apiMethods = map[string]apiHandler{
		"apps.connections.open": {auth: "app", fn: (*Server).apiConnectionsOpen},
		"auth.test":             bot((*Server).apiAuthTest),
		"chat.postMessage":      bot((*Server).apiPostMessage),
		"chat.update":           bot((*Server).apiUpdate),
		"chat.postEphemeral":    bot((*Server).apiPostEphemeral),
		"chat.delete":           bot((*Server).apiDelete),
		"chat.getPermalink":     bot((*Server).apiPermalink),
		"reactions.add":         bot((*Server).apiReactionsAdd),
		"views.open":            bot((*Server).apiViewsOpen),
		"views.push":            bot((*Server).apiViewsPush),
		"views.update":          bot((*Server).apiViewsUpdate),
		"users.info":            bot((*Server).apiUsersInfo),
		"users.list":            bot((*Server).apiUsersList),
		"usergroups.list":       bot((*Server).apiUserGroupsList),
		"usergroups.users.list": bot((*Server).apiUserGroupsUsersList),
		"conversations.info":    bot((*Server).apiConversationsInfo),
		"conversations.list":    bot((*Server).apiConversationsList),
		"conversations.open":    bot((*Server).apiConversationsOpen),
		"conversations.history": bot((*Server).apiConversationsHistory),
		"conversations.replies": bot((*Server).apiConversationsReplies),
	}
}

// parseParams reads form, query or JSON parameters and the token (Bearer
// header, else the "token" form/query field).
func parseParams(r *http.Request) (params, string, *apiErr) {
	p := params{}
	bearer := ""
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		bearer = strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			return nil, "", &apiErr{code: "invalid_arguments"}
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, &p); err != nil {
				return nil, bearer, &apiErr{code: "invalid_json"}
			}
		}
		for k, v := range r.URL.Query() {
			if _, ok := p[k]; !ok && len(v) > 0 {
				p[k], _ = json.Marshal(v[0])
			}
		}
		// JSON bodies must authenticate with the header, like Slack.
		return p, bearer, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, "", &apiErr{code: "invalid_form_data"}
	}
	for k, v := range r.Form {
		if len(v) > 0 {
			p[k], _ = json.Marshal(v[0])
		}
	}
	if bearer != "" {
		return p, bearer, nil
	}
	return p, p.str("token"), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errBody(e *apiErr) map[string]any {
	body := map[string]any{"ok": false, "error": e.code}
	if len(e.messages) > 0 {
		body["response_metadata"] = map[string]any{"messages": e.messages}
	}
	return body
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	p, token, perr := parseParams(r)

	s.mu.Lock()
	s.calls[method]++
	s.notifyLocked()
	h, ok := apiMethods[method]
	var (
		body       map[string]any
		aerr       = perr
		retryAfter int
		limited    bool
	)
	switch {
	case !ok:
		aerr = &apiErr{code: "unknown_method"}
	case aerr != nil:
	default:
		aerr = s.checkToken(h.auth, token)
	}
	if aerr == nil {
		channel := p.str("channel")
		if c := s.resolveChannel(channel); c != nil {
			channel = c.ID
		}
		retryAfter, limited = s.rateLimitLocked(method, channel)
	}
	if aerr == nil && !limited {
		body, aerr = h.fn(s, &apiReq{method: method, p: p, token: token})
	}
	var out []byte
	switch {
	case limited:
	case aerr != nil:
		out = mustJSON(errBody(aerr))
	default:
		body["ok"] = true
		out = mustJSON(body) // encoded under s.mu: body may share state
	}
	s.mu.Unlock()

	switch {
	case limited:
		s.logf("%s → 429 (Retry-After %d)", method, retryAfter)
		write429(w, retryAfter)
	default:
		if aerr != nil {
			s.logf("%s → %s", method, aerr.code)
		} else {
			s.logf("%s → ok", method)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(out)
	}
}

// checkToken authenticates a request. Caller holds s.mu.
func (s *Server) checkToken(kind, token string) *apiErr {
	want, other := s.opts.BotToken, s.opts.AppToken
	if kind == "app" {
		want, other = other, want
	}
	switch token {
	case "":
		return &apiErr{code: "not_authed"}
	case want:
		return nil
	case other:
		return &apiErr{code: "not_allowed_token_type"}
	}
	return &apiErr{code: "invalid_auth"}
}

func (s *Server) apiConnectionsOpen(*apiReq) (map[string]any, *apiErr) {
	if s.sock.refusing {
		return nil, &apiErr{code: "internal_error"}
	}
	return map[string]any{"url": s.openTicketLocked()}, nil
}

func (s *Server) apiAuthTest(*apiReq) (map[string]any, *apiErr) {
	return map[string]any{
		"url":                   "https://" + s.opts.TeamDomain + ".slack.com/",
		"team":                  s.opts.TeamName,
		"user":                  s.opts.BotName,
		"team_id":               s.opts.TeamID,
		"user_id":               s.opts.BotUserID,
		"bot_id":                s.opts.BotID,
		"is_enterprise_install": false,
	}, nil
}

func (s *Server) channelParam(q *apiReq) (*channel, *apiErr) {
	if q.p.str("channel") == "" {
		return nil, &apiErr{code: "channel_not_found"}
	}
	ref := q.p.str("channel")
	c := s.resolveChannel(ref)
	if c == nil {
		if u := s.users[ref]; u != nil && !u.IsBot { // posting to a user ID means the DM
			return s.dmLocked(u), nil
		}
		return nil, &apiErr{code: "channel_not_found"}
	}
	return c, nil
}

func (s *Server) apiConversationsOpen(q *apiReq) (map[string]any, *apiErr) {
	ids := strings.Split(q.p.str("users"), ",")
	if q.p.str("users") == "" {
		if ch := s.channels[q.p.str("channel")]; ch != nil && ch.IsIM {
			return map[string]any{"channel": s.wireChannelLocked(ch), "already_open": true}, nil
		}
		return nil, &apiErr{code: "users_list_not_supplied"}
	}
	if len(ids) != 1 {
		return nil, &apiErr{code: "not_enough_users"} // group DMs are not emulated
	}
	u := s.users[strings.TrimSpace(ids[0])]
	if u == nil {
		return nil, &apiErr{code: "user_not_found"}
	}
	return map[string]any{"channel": s.wireChannelLocked(s.dmLocked(u))}, nil
}

// threadRoot resolves a thread_ts to its root (replying to a reply threads
// under the root). Caller holds s.mu.
func threadRoot(c *channel, ts string) (string, *apiErr) {
	if ts == "" {
		return "", nil
	}
	p := c.byTS[ts]
	if p == nil {
		return "", &apiErr{code: "thread_not_found"}
	}
	if p.ThreadTS != "" {
		return p.ThreadTS, nil
	}
	return ts, nil
}

func (s *Server) apiPostMessage(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	body, e := prepareContent(q.p.str("text"), q.p.json("blocks"), q.p.json("attachments"))
	if e != nil {
		return nil, e
	}
	thread, e := threadRoot(c, q.p.str("thread_ts"))
	if e != nil {
		return nil, e
	}
	m := &Message{
		Channel: c.ID, TS: s.nextTS(), ThreadTS: thread,
		User: s.opts.BotUserID, BotID: s.opts.BotID, AppID: s.opts.AppID,
		Username: q.p.str("username"),
		Text:     body.text, Blocks: body.blocks, Attachments: body.attachments,
	}
	s.storeMessage(c, m)
	wire := s.wireMessageLocked(c, m)
	if s.opts.EchoBotMessages {
		s.emitMessageEventLocked(c, m)
	}
	return map[string]any{"channel": c.ID, "ts": m.TS, "message": wire}, nil
}

func (s *Server) apiUpdate(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	m := c.byTS[q.p.str("ts")]
	if m == nil {
		return nil, &apiErr{code: "message_not_found"}
	}
	if m.BotID != s.opts.BotID || m.User != s.opts.BotUserID {
		return nil, &apiErr{code: "cant_update_message"}
	}
	text, blocks, atts := m.Text, m.Blocks, m.Attachments
	if q.p.has("text") {
		text = q.p.str("text")
	}
	if q.p.has("blocks") {
		blocks = q.p.json("blocks")
	}
	if q.p.has("attachments") {
		atts = q.p.json("attachments")
	}
	body, e := prepareContent(text, blocks, atts)
	if e != nil {
		return nil, e
	}
	prev := s.wireMessageLocked(c, m)
	s.applyEditLocked(m, body)
	wire := s.wireMessageLocked(c, m)
	if s.opts.EchoBotMessages {
		s.emitChangedEventLocked(c, wire, prev)
	}
	s.notifyLocked()
	return map[string]any{"channel": c.ID, "ts": m.TS, "text": m.Text, "message": wire}, nil
}

// applyEditLocked records the old version and applies body. Caller holds s.mu.
func (s *Server) applyEditLocked(m *Message, body content) {
	now := s.now()
	m.History = append(m.History, Revision{Text: m.Text, Blocks: m.Blocks, Attachments: m.Attachments, Replaced: now})
	m.Edits++
	m.Edited = now
	m.editedTS = fmtTS(now.UnixMicro())
	m.Text, m.Blocks, m.Attachments = body.text, body.blocks, body.attachments
}

func (s *Server) apiPostEphemeral(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	user := q.p.str("user")
	if s.users[user] == nil {
		return nil, &apiErr{code: "user_not_in_channel"}
	}
	body, e := prepareContent(q.p.str("text"), q.p.json("blocks"), q.p.json("attachments"))
	if e != nil {
		return nil, e
	}
	ts := s.nextTS()
	s.addEphemeralLocked(Ephemeral{
		Channel: c.ID, User: user, TS: ts, ThreadTS: q.p.str("thread_ts"),
		Text: body.text, Blocks: body.blocks, Attachments: body.attachments,
	})
	return map[string]any{"message_ts": ts}, nil
}

func (s *Server) addEphemeralLocked(e Ephemeral) {
	s.ephemerals[e.User] = append(s.ephemerals[e.User], e)
	s.notifyLocked()
}

func (s *Server) apiDelete(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	ts := q.p.str("ts")
	m := c.byTS[ts]
	if m == nil {
		return nil, &apiErr{code: "message_not_found"}
	}
	if m.BotID != s.opts.BotID {
		return nil, &apiErr{code: "cant_delete_message"}
	}
	s.deleteMessageLocked(c, m)
	return map[string]any{"channel": c.ID, "ts": ts}, nil
}

func (s *Server) deleteMessageLocked(c *channel, m *Message) {
	delete(c.byTS, m.TS)
	for i, x := range c.msgs {
		if x == m {
			c.msgs = append(c.msgs[:i:i], c.msgs[i+1:]...)
			break
		}
	}
	if p := c.byTS[m.ThreadTS]; p != nil {
		for i, r := range p.Replies {
			if r == m.TS {
				p.Replies = append(p.Replies[:i:i], p.Replies[i+1:]...)
				break
			}
		}
	}
	s.notifyLocked()
}
