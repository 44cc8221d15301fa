package emulator

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// verificationToken is the (deprecated) token Slack puts in payloads.
const verificationToken = "emuVerificationToken0001"

// wireMessageLocked renders a stored message the way Slack returns it in
// chat.postMessage responses, history, interaction payloads and events.
// Caller holds s.mu.
func (s *Server) wireMessageLocked(c *channel, m *Message) map[string]any {
	w := map[string]any{"type": "message", "text": m.Text, "ts": m.TS, "team": s.opts.TeamID}
	if m.SubType != "" {
		w["subtype"] = m.SubType
	}
	if m.User != "" {
		w["user"] = m.User
	}
	if m.BotID != "" {
		w["bot_id"] = m.BotID
	}
	if m.AppID != "" {
		w["app_id"] = m.AppID
	}
	if m.Username != "" {
		w["username"] = m.Username
	}
	if m.BotID == s.opts.BotID {
		w["bot_profile"] = map[string]any{
			"id": s.opts.BotID, "app_id": s.opts.AppID, "name": s.opts.BotName,
			"deleted": false, "team_id": s.opts.TeamID, "updated": s.now().Unix(),
			"icons": map[string]any{"image_36": "", "image_48": "", "image_72": ""},
		}
	}
	if len(m.Blocks) > 0 {
		w["blocks"] = m.Blocks
	}
	if len(m.Attachments) > 0 {
		w["attachments"] = m.Attachments
	}
	if m.ThreadTS != "" {
		w["thread_ts"] = m.ThreadTS
		w["parent_user_id"] = s.parentUserLocked(c, m.ThreadTS)
	}
	if len(m.Replies) > 0 {
		users := []string{}
		seen := map[string]bool{}
		for _, ts := range m.Replies {
			if r := c.byTS[ts]; r != nil && !seen[r.User] && r.User != "" {
				seen[r.User] = true
				users = append(users, r.User)
			}
		}
		w["thread_ts"] = m.TS
		w["reply_count"] = len(m.Replies)
		w["reply_users"] = users
		w["reply_users_count"] = len(users)
		w["latest_reply"] = m.Replies[len(m.Replies)-1]
	}
	if m.Edits > 0 {
		w["edited"] = map[string]any{"user": m.User, "ts": m.editedTS}
	}
	if len(m.Reactions) > 0 {
		var rs []map[string]any
		for _, name := range sortedKeys(m.Reactions) {
			us := m.Reactions[name]
			rs = append(rs, map[string]any{"name": name, "users": us, "count": len(us)})
		}
		w["reactions"] = rs
	}
	return w
}

func (s *Server) parentUserLocked(c *channel, ts string) string {
	if p := c.byTS[ts]; p != nil {
		return p.User
	}
	return ""
}

// emitEventLocked wraps ev in the full event_callback envelope and sends it
// as an events_api envelope. Caller holds s.mu.
func (s *Server) emitEventLocked(ev map[string]any) string {
	now := s.now()
	ctx := base64.RawURLEncoding.EncodeToString([]byte(`{"oid":"` + s.opts.TeamID + `","id":"` + s.opts.AppID + `"}`))
	payload := map[string]any{
		"token":           verificationToken,
		"team_id":         s.opts.TeamID,
		"context_team_id": s.opts.TeamID,
		"api_app_id":      s.opts.AppID,
		"event":           ev,
		"type":            "event_callback",
		"event_id":        "Ev" + s.newID("")[1:],
		"event_time":      now.Unix(),
		"authorizations": []map[string]any{{
			"enterprise_id": nil, "team_id": s.opts.TeamID, "user_id": s.opts.BotUserID,
			"is_bot": true, "is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false,
		"event_context":         "4-" + ctx,
	}
	return s.enqueueLocked("events_api", payload, false, nil)
}

// emitMessageEventLocked sends a "message" event for m (and an app_mention
// when enabled and m mentions the bot). Caller holds s.mu.
func (s *Server) emitMessageEventLocked(c *channel, m *Message) {
	ev := s.wireMessageLocked(c, m)
	delete(ev, "reply_count")
	delete(ev, "reply_users")
	delete(ev, "reply_users_count")
	delete(ev, "latest_reply")
	if m.ThreadTS == "" {
		delete(ev, "thread_ts")
	}
	ev["channel"] = c.ID
	ev["channel_type"] = channelType(c)
	ev["event_ts"] = m.TS
	if m.BotID == "" && m.User != "" {
		ev["client_msg_id"] = newUUID()
	}
	s.emitEventLocked(ev)
	if s.opts.AppMentionEvents && m.BotID == "" && strings.Contains(m.Text, "<@"+s.opts.BotUserID+">") {
		am := map[string]any{
			"type": "app_mention", "user": m.User, "text": m.Text, "ts": m.TS,
			"channel": c.ID, "event_ts": m.TS, "team": s.opts.TeamID,
		}
		if m.ThreadTS != "" {
			am["thread_ts"] = m.ThreadTS
		}
		s.emitEventLocked(am)
	}
}

func channelType(c *channel) string {
	if c.IsIM {
		return "im"
	}
	return "channel"
}

// emitChangedEventLocked sends a message_changed event. Caller holds s.mu.
func (s *Server) emitChangedEventLocked(c *channel, msg, prev map[string]any) {
	ts := s.nextTS()
	s.emitEventLocked(map[string]any{
		"type": "message", "subtype": "message_changed", "hidden": true,
		"channel": c.ID, "channel_type": channelType(c), "ts": ts, "event_ts": ts,
		"message": msg, "previous_message": prev,
	})
}

// wireUserLocked renders a user like users.info. Caller holds s.mu.
func (s *Server) wireUserLocked(u *User) map[string]any {
	profile := map[string]any{
		"real_name": u.RealName, "real_name_normalized": u.RealName,
		"display_name": u.Name, "display_name_normalized": u.Name,
		"email": u.Email, "team": s.opts.TeamID, "status_text": "", "status_emoji": "",
		"image_24": "", "image_32": "", "image_48": "", "image_72": "", "image_192": "",
	}
	if u.ID == s.opts.BotUserID {
		profile["bot_id"] = s.opts.BotID
		profile["api_app_id"] = s.opts.AppID
	}
	return map[string]any{
		"id": u.ID, "team_id": s.opts.TeamID, "name": u.Name, "deleted": false,
		"color": "9f69e7", "real_name": u.RealName,
		"tz": "Europe/London", "tz_label": "Greenwich Mean Time", "tz_offset": 0,
		"profile": profile, "is_admin": u.IsAdmin, "is_owner": false, "is_primary_owner": false,
		"is_restricted": false, "is_ultra_restricted": false, "is_bot": u.IsBot,
		"is_app_user": false, "updated": s.now().Unix(), "is_email_confirmed": u.Email != "",
	}
}

// wireChannelLocked renders a channel like conversations.info. Caller holds s.mu.
func (s *Server) wireChannelLocked(c *channel) map[string]any {
	topic := map[string]any{"value": "", "creator": "", "last_set": 0}
	if c.IsIM {
		return map[string]any{
			"id": c.ID, "is_im": true, "is_channel": false, "is_group": false, "is_mpim": false,
			"is_private": true, "is_archived": false, "is_org_shared": false, "is_open": true,
			"user": c.User, "created": s.now().Unix(), "context_team_id": s.opts.TeamID,
			"is_user_deleted": false, "priority": 0,
		}
	}
	return map[string]any{
		"id": c.ID, "name": c.Name, "name_normalized": c.Name,
		"is_channel": true, "is_group": false, "is_im": false, "is_mpim": false,
		"is_private": false, "is_archived": false, "is_general": false,
		"is_shared": false, "is_org_shared": false, "is_ext_shared": false,
		"is_pending_ext_shared": false, "is_member": true, "unlinked": 0,
		"created": s.now().Unix(), "creator": "", "context_team_id": s.opts.TeamID,
		"topic": topic, "purpose": topic, "previous_names": []string{},
		"num_members": len(s.users),
	}
}

// wireUserGroupLocked renders a user group like usergroups.list.
func (s *Server) wireUserGroupLocked(g *UserGroup, withUsers bool) map[string]any {
	w := map[string]any{
		"id": g.ID, "team_id": s.opts.TeamID, "is_usergroup": true, "is_subteam": true,
		"name": g.Name, "description": "", "handle": g.Handle, "is_external": false,
		"date_create": s.now().Unix(), "date_update": s.now().Unix(), "date_delete": 0,
		"auto_type": nil, "created_by": "", "updated_by": "", "deleted_by": nil,
		"prefs":      map[string]any{"channels": []string{}, "groups": []string{}},
		"user_count": len(g.Members),
	}
	if withUsers {
		w["users"] = append([]string{}, g.Members...)
	}
	return w
}

// mustJSON marshals v (which never fails for the emulator's own maps).
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("slackemu: " + err.Error())
	}
	return b
}
