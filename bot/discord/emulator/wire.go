package emulator

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// obj is a JSON object as Discord sends it.
type obj = map[string]any

// rfc3339 formats t as Discord does: "2024-01-01T00:00:00.000000+00:00".
func rfc3339(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000+00:00")
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("discordemu: marshal: " + err.Error())
	}
	return b
}

// rawOrEmpty returns raw, or an empty JSON array when raw is empty or null.
func rawOrEmpty(raw json.RawMessage) json.RawMessage {
	if isEmptyJSON(raw) {
		return json.RawMessage("[]")
	}
	return raw
}

// isEmptyJSON reports whether raw is missing, null or an empty array.
func isEmptyJSON(raw json.RawMessage) bool {
	s := string(raw)
	return s == "" || s == "null" || s == "[]"
}

func (s *Server) wireUserLocked(id string) obj {
	u := s.users[id]
	if u == nil {
		return obj{"id": id, "username": "unknown-user", "discriminator": "0", "global_name": nil, "avatar": nil}
	}
	o := obj{"id": u.ID, "username": u.Username, "discriminator": "0", "avatar": nil, "public_flags": 0}
	if u.GlobalName != "" {
		o["global_name"] = u.GlobalName
	} else {
		o["global_name"] = nil
	}
	if u.Bot {
		o["bot"] = true
	}
	return o
}

// wireMemberLocked is a guild member; withUser adds the "user" object.
func (s *Server) wireMemberLocked(guildID, userID string, withUser bool) obj {
	o := obj{
		"roles": s.memberRolesLocked(guildID, userID), "nick": nil, "avatar": nil,
		"joined_at": rfc3339(snowflakeTime(guildID)), "premium_since": nil,
		"deaf": false, "mute": false, "pending": false, "flags": 0,
	}
	if withUser {
		o["user"] = s.wireUserLocked(userID)
	}
	return o
}

// memberPermissionsLocked ORs the permissions of @everyone and the
// member's roles, as Discord computes them for the "permissions" string.
func (s *Server) memberPermissionsLocked(guildID, userID string) int64 {
	var p int64
	if r := s.roles[guildID]; r != nil {
		p |= r.Permissions
	}
	for _, id := range s.memberRolesLocked(guildID, userID) {
		p |= s.roles[id].Permissions
	}
	if g := s.guilds[guildID]; g != nil && g.OwnerID == userID || p&8 != 0 { // ADMINISTRATOR
		p = 1<<41 - 1
	}
	return p
}

func wireRole(r *Role, position int) obj {
	return obj{
		"id": r.ID, "name": r.Name, "color": r.Color, "hoist": false, "icon": nil,
		"unicode_emoji": nil, "position": position, "permissions": strconv.FormatInt(r.Permissions, 10),
		"managed": false, "mentionable": r.Mentionable, "flags": 0,
	}
}

func (s *Server) wireRolesLocked(guildID string) []obj {
	out := []obj{}
	pos := 0
	for _, id := range s.roleOrder {
		if r := s.roles[id]; r.GuildID == guildID {
			out = append(out, wireRole(r, pos))
			pos++
		}
	}
	return out
}

func (s *Server) wireChannelLocked(c *channel) obj {
	o := obj{"id": c.ID, "type": c.Type, "flags": 0, "last_message_id": nil}
	if n := len(c.msgs); n > 0 {
		o["last_message_id"] = c.msgs[n-1].ID
	}
	switch c.Type {
	case ChannelDM:
		o["recipients"] = []obj{s.wireUserLocked(c.Recipient)}
		return o
	case ChannelPublicThread, ChannelPrivateThread:
		o["guild_id"], o["name"], o["parent_id"], o["owner_id"] = c.GuildID, c.Name, c.ParentID, c.OwnerID
		o["rate_limit_per_user"] = 0
		o["message_count"], o["total_message_sent"] = len(c.msgs), len(c.msgs)
		o["member_count"] = len(c.Members)
		o["thread_metadata"] = obj{
			"archived": c.Archived, "auto_archive_duration": c.AutoArchiveDuration,
			"archive_timestamp": rfc3339(snowflakeTime(c.ID)), "locked": false,
			"create_timestamp": rfc3339(snowflakeTime(c.ID)),
		}
		if c.Type == ChannelPrivateThread {
			o["thread_metadata"].(obj)["invitable"] = true
		}
		return o
	}
	o["guild_id"], o["name"], o["position"], o["parent_id"] = c.GuildID, c.Name, 0, nil
	o["topic"], o["nsfw"], o["rate_limit_per_user"] = nil, false, 0
	o["permission_overwrites"] = []obj{}
	return o
}

func (s *Server) wireGuildLocked(g *Guild) obj {
	return obj{
		"id": g.ID, "name": g.Name, "icon": nil, "owner_id": g.OwnerID, "afk_channel_id": nil,
		"afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
		"explicit_content_filter": 0, "roles": s.wireRolesLocked(g.ID), "emojis": []obj{},
		"features": []string{}, "mfa_level": 0, "system_channel_id": nil, "premium_tier": 0,
		"preferred_locale": "en-US", "nsfw_level": 0, "stickers": []obj{},
	}
}

// wireGuildCreateLocked is the GUILD_CREATE payload: the guild plus its
// channels, active threads and members.
func (s *Server) wireGuildCreateLocked(g *Guild) obj {
	o := s.wireGuildLocked(g)
	chans, threads := []obj{}, []obj{}
	for _, id := range s.chanOrder {
		c := s.channels[id]
		if c.GuildID != g.ID {
			continue
		}
		w := s.wireChannelLocked(c)
		switch c.Type {
		case ChannelPublicThread, ChannelPrivateThread:
			if !c.Archived {
				threads = append(threads, w)
			}
		default:
			delete(w, "guild_id") // as Discord sends them in GUILD_CREATE
			chans = append(chans, w)
		}
	}
	members := []obj{}
	for _, id := range s.userOrder {
		members = append(members, s.wireMemberLocked(g.ID, id, true))
	}
	o["channels"], o["threads"], o["members"] = chans, threads, members
	o["member_count"], o["large"], o["unavailable"] = len(members), false, false
	o["joined_at"] = rfc3339(snowflakeTime(g.ID))
	o["presences"], o["voice_states"], o["stage_instances"] = []obj{}, []obj{}, []obj{}
	o["guild_scheduled_events"], o["soundboard_sounds"] = []obj{}, []obj{}
	return o
}

// wireMessageLocked renders a message as the REST API returns it.
func (s *Server) wireMessageLocked(m *Message) obj {
	o := obj{
		"id": m.ID, "channel_id": m.ChannelID, "type": m.Type, "content": m.Content,
		"embeds": rawOrEmpty(m.Embeds), "components": rawOrEmpty(m.Components),
		"attachments": []obj{}, "tts": false, "pinned": false,
		"mention_everyone": m.MentionEveryone, "mention_roles": nonNil(m.MentionRoles),
		"timestamp": rfc3339(m.Timestamp), "edited_timestamp": nil, "flags": m.Flags,
	}
	if !m.EditedTimestamp.IsZero() {
		o["edited_timestamp"] = rfc3339(m.EditedTimestamp)
	}
	mentions := []obj{}
	for _, id := range m.Mentions {
		mentions = append(mentions, s.wireUserLocked(id))
	}
	o["mentions"] = mentions
	if m.WebhookID != "" && m.ApplicationID == "" {
		o["webhook_id"] = m.WebhookID
		o["author"] = obj{"id": m.WebhookID, "username": m.Username, "discriminator": "0000", "avatar": nil, "bot": true, "global_name": nil}
	} else {
		o["author"] = s.wireUserLocked(m.Author)
	}
	if m.ApplicationID != "" {
		o["application_id"] = m.ApplicationID
		o["webhook_id"] = m.ApplicationID
	}
	if m.InteractionID != "" {
		if in := s.interactions[m.InteractionID]; in != nil {
			o["interaction_metadata"] = obj{
				"id": in.ID, "type": in.Type, "user": s.wireUserLocked(in.User),
				"authorizing_integration_owners": obj{"0": in.GuildID},
			}
		}
	}
	if m.ReferenceID != "" {
		o["message_reference"] = obj{"type": 0, "message_id": m.ReferenceID, "channel_id": m.ChannelID, "guild_id": m.GuildID}
	}
	if m.ThreadID != "" {
		if t := s.channels[m.ThreadID]; t != nil {
			o["thread"] = s.wireChannelLocked(t)
		}
	}
	if len(m.Reactions) > 0 {
		var rs []obj
		for _, e := range sortedKeys(m.Reactions) {
			us := m.Reactions[e]
			rs = append(rs, obj{"emoji": obj{"id": nil, "name": e}, "count": len(us),
				"me": slices.Contains(us, s.opts.ApplicationID), "burst_colors": []string{},
				"count_details": obj{"burst": 0, "normal": len(us)}, "me_burst": false, "burst_count": 0})
		}
		o["reactions"] = rs
	}
	return o
}

// wireMessageForLocked renders m for the bot, blanking what Discord
// withholds from an app without the MESSAGE_CONTENT intent: content,
// embeds, attachments and components of other authors' messages, unless
// the message mentions the bot or is in a DM.
func (s *Server) wireMessageForLocked(m *Message, contentIntent bool) obj {
	o := s.wireMessageLocked(m)
	if contentIntent || m.Author == s.opts.ApplicationID || m.ApplicationID == s.opts.ApplicationID ||
		m.GuildID == "" || slices.Contains(m.Mentions, s.opts.ApplicationID) {
		return o
	}
	o["content"], o["embeds"], o["attachments"], o["components"] = "", []obj{}, []obj{}, []obj{}
	return o
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
