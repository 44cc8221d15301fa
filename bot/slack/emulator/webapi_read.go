package emulator

import (
	"net/http"
	"strings"
)

func (s *Server) apiUsersInfo(q *apiReq) (map[string]any, *apiErr) {
	u := s.users[q.p.str("user")]
	if u == nil {
		return nil, &apiErr{code: "user_not_found"}
	}
	return map[string]any{"user": s.wireUserLocked(u)}, nil
}

func (s *Server) apiUsersList(*apiReq) (map[string]any, *apiErr) {
	members := []map[string]any{}
	for _, id := range s.userOrder {
		members = append(members, s.wireUserLocked(s.users[id]))
	}
	return map[string]any{
		"members": members, "cache_ts": s.now().Unix(),
		"response_metadata": map[string]any{"next_cursor": ""},
	}, nil
}

func (s *Server) apiUserGroupsList(q *apiReq) (map[string]any, *apiErr) {
	groups := []map[string]any{}
	for _, id := range s.groupOrder {
		groups = append(groups, s.wireUserGroupLocked(s.groups[id], q.p.bool("include_users")))
	}
	return map[string]any{"usergroups": groups}, nil
}

func (s *Server) apiUserGroupsUsersList(q *apiReq) (map[string]any, *apiErr) {
	g := s.groups[q.p.str("usergroup")]
	if g == nil {
		return nil, &apiErr{code: "no_such_subteam"}
	}
	return map[string]any{"users": append([]string{}, g.Members...)}, nil
}

func (s *Server) apiConversationsInfo(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	return map[string]any{"channel": s.wireChannelLocked(c)}, nil
}

// apiConversationsList lists public channels (types "public_channel", the
// default) and the bot's DMs ("im"), in one page.
func (s *Server) apiConversationsList(q *apiReq) (map[string]any, *apiErr) {
	types := q.p.str("types")
	if types == "" {
		types = "public_channel"
	}
	want := map[string]bool{}
	for _, t := range strings.Split(types, ",") {
		want[strings.TrimSpace(t)] = true
	}
	chans := []map[string]any{}
	for _, id := range s.chanOrder {
		c := s.channels[id]
		if (c.IsIM && want["im"]) || (!c.IsIM && want["public_channel"]) {
			chans = append(chans, s.wireChannelLocked(c))
		}
	}
	return map[string]any{"channels": chans, "response_metadata": map[string]any{"next_cursor": ""}}, nil
}

func (s *Server) apiConversationsHistory(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	msgs := []map[string]any{}
	for i := len(c.msgs) - 1; i >= 0; i-- { // newest first, like Slack
		if m := c.msgs[i]; m.ThreadTS == "" {
			msgs = append(msgs, s.wireMessageLocked(c, m))
		}
	}
	return map[string]any{
		"messages": msgs, "has_more": false, "pin_count": 0,
		"response_metadata": map[string]any{"next_cursor": ""},
	}, nil
}

func (s *Server) apiConversationsReplies(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	root := c.byTS[q.p.str("ts")]
	if root == nil {
		return nil, &apiErr{code: "thread_not_found"}
	}
	if root.ThreadTS != "" {
		root = c.byTS[root.ThreadTS]
		if root == nil {
			return nil, &apiErr{code: "thread_not_found"}
		}
	}
	msgs := []map[string]any{s.wireMessageLocked(c, root)}
	for _, ts := range root.Replies {
		if r := c.byTS[ts]; r != nil {
			msgs = append(msgs, s.wireMessageLocked(c, r))
		}
	}
	return map[string]any{
		"messages": msgs, "has_more": false,
		"response_metadata": map[string]any{"next_cursor": ""},
	}, nil
}

func (s *Server) apiReactionsAdd(q *apiReq) (map[string]any, *apiErr) {
	name := q.p.str("name")
	if name == "" || strings.Contains(name, ":") || strings.ContainsAny(name, " \t") {
		return nil, &apiErr{code: "invalid_name"}
	}
	if q.p.str("channel") == "" || q.p.str("timestamp") == "" {
		return nil, &apiErr{code: "no_item_specified"}
	}
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	m := c.byTS[q.p.str("timestamp")]
	if m == nil {
		return nil, &apiErr{code: "message_not_found"}
	}
	if m.Reactions == nil {
		m.Reactions = map[string][]string{}
	}
	for _, u := range m.Reactions[name] {
		if u == s.opts.BotUserID {
			return nil, &apiErr{code: "already_reacted"}
		}
	}
	if len(m.Reactions) >= 23 && m.Reactions[name] == nil {
		return nil, &apiErr{code: "too_many_reactions"}
	}
	m.Reactions[name] = append(m.Reactions[name], s.opts.BotUserID)
	s.notifyLocked()
	return map[string]any{}, nil
}

func (s *Server) apiPermalink(q *apiReq) (map[string]any, *apiErr) {
	c, e := s.channelParam(q)
	if e != nil {
		return nil, e
	}
	m := c.byTS[q.p.str("message_ts")]
	if m == nil {
		return nil, &apiErr{code: "message_not_found"}
	}
	return map[string]any{"channel": c.ID, "permalink": s.permalinkLocked(c, m)}, nil
}

// permalinkLocked returns a link that opens the emulator UI on the message,
// in Slack's /archives/C…/p1700000000000100 shape.
func (s *Server) permalinkLocked(c *channel, m *Message) string {
	link := s.url + "archives/" + c.ID + "/p" + strings.Replace(m.TS, ".", "", 1)
	if m.ThreadTS != "" {
		link += "?thread_ts=" + m.ThreadTS + "&cid=" + c.ID
	}
	return link
}

// Permalink returns the chat.getPermalink link for a message, or "".
func (s *Server) Permalink(channelID, ts string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.resolveChannel(channelID)
	if c == nil || c.byTS[ts] == nil {
		return ""
	}
	return s.permalinkLocked(c, c.byTS[ts])
}

// handleArchive serves permalinks by redirecting to the UI.
func (s *Server) handleArchive(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/archives/"), "/")
	http.Redirect(w, r, "/#"+parts[0], http.StatusFound)
}
