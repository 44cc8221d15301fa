package emulator

import (
	"net/http"
	"slices"
	"strconv"
)

// Flags a bot may set on a channel message.
const channelMessageFlags = FlagSuppressEmbeds | FlagSuppressNotification | FlagComponentsV2

// postLocked stores m in c (ID, guild and timestamp filled in) and
// dispatches MESSAGE_CREATE. Caller holds s.mu.
func (s *Server) postLocked(c *channel, m *Message) {
	if m.ID == "" {
		m.ID = s.snowflakeLocked()
	}
	m.ChannelID, m.GuildID = c.ID, c.GuildID
	m.Timestamp = snowflakeTime(m.ID)
	if c.Archived {
		c.Archived = false // posting unarchives a thread
	}
	s.storeMessageLocked(c, m)
	s.dispatchMessageLocked("MESSAGE_CREATE", c, m)
}

// dispatchMessageLocked sends MESSAGE_CREATE/UPDATE for m under the
// GUILD_MESSAGES (or DIRECT_MESSAGES) intent. Caller holds s.mu.
func (s *Server) dispatchMessageLocked(event string, c *channel, m *Message) {
	intent := IntentGuildMessages
	if c.GuildID == "" {
		intent = IntentDirectMessages
	}
	s.dispatchLocked(event, intent, func(contentIntent bool) any {
		o := s.wireMessageForLocked(m, contentIntent)
		if c.GuildID != "" {
			o["guild_id"] = c.GuildID
			if m.WebhookID == "" && m.ApplicationID == "" && s.users[m.Author] != nil {
				o["member"] = s.wireMemberLocked(c.GuildID, m.Author, false)
			}
		}
		o["channel_type"] = c.Type
		return o
	})
}

// applyEditLocked applies a validated edit to m, keeping the old version
// in History, and dispatches MESSAGE_UPDATE for channel messages.
func (s *Server) applyEditLocked(m *Message, ct *content) *apiError {
	next := Revision{Content: m.Content, Embeds: m.Embeds, Components: m.Components, Flags: m.Flags}
	if ct.hasText {
		next.Content = ct.text
	}
	if ct.hasEmbeds {
		next.Embeds = ct.embeds
	}
	if ct.hasComponents {
		next.Components = ct.components
	}
	if ct.hasFlags {
		next.Flags = m.Flags&^channelMessageFlags | ct.flags&channelMessageFlags
	}
	if next.Content == "" && isEmptyJSON(next.Embeds) && isEmptyJSON(next.Components) {
		return errEmptyMessage()
	}
	m.History = append(m.History, Revision{Content: m.Content, Embeds: m.Embeds, Components: m.Components, Flags: m.Flags})
	m.Content, m.Embeds, m.Components = next.Content, next.Embeds, next.Components
	m.Flags = next.Flags &^ FlagLoading
	if ct.hasText || ct.mentions != nil {
		s.applyMentionsLocked(m, ct.mentions)
	}
	m.Edits++
	m.EditedTimestamp = s.now()
	s.notifyLocked()
	if m.VisibleTo == "" {
		if c := s.channels[m.ChannelID]; c != nil {
			s.dispatchMessageLocked("MESSAGE_UPDATE", c, m)
		}
	}
	return nil
}

// channelFor resolves the {channel_id} of a call, failing with 10003.
func (c *call) channelLocked() *channel {
	ch := c.s.channels[c.p("channel_id")]
	if ch == nil {
		c.fail(errUnknownChannel())
	}
	return ch
}

func (s *Server) getChannel(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := c.channelLocked(); ch != nil {
		c.ok(http.StatusOK, s.wireChannelLocked(ch))
	}
}

// listMessages serves GET /channels/{id}/messages?limit&before&after&around,
// newest first, as Discord does.
func (s *Server) listMessages(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.channelLocked()
	if ch == nil {
		return
	}
	limit := 50
	if l := c.query.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			var f formErrors
			f.add("limit", "NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")
			c.fail(f.err())
			return
		}
		limit = n
	}
	before, after := idNum(c.query.Get("before")), idNum(c.query.Get("after"))
	out := []obj{}
	if after > 0 { // oldest after "after", returned newest first
		var picked []*Message
		for _, m := range ch.msgs {
			if idNum(m.ID) > after && len(picked) < limit {
				picked = append(picked, m)
			}
		}
		for i := len(picked) - 1; i >= 0; i-- {
			out = append(out, s.wireMessageForLocked(picked[i], s.restContentLocked()))
		}
	} else {
		for i := len(ch.msgs) - 1; i >= 0 && len(out) < limit; i-- {
			if m := ch.msgs[i]; before == 0 || idNum(m.ID) < before {
				out = append(out, s.wireMessageForLocked(m, s.restContentLocked()))
			}
		}
	}
	c.ok(http.StatusOK, out)
}

func idNum(id string) uint64 {
	n, _ := strconv.ParseUint(id, 10, 64)
	return n
}

// restContentLocked reports whether REST reads show message content: the
// MESSAGE_CONTENT intent is enabled for the app in the portal.
func (s *Server) restContentLocked() bool { return s.opts.DeniedIntents&IntentMessageContent == 0 }

func (s *Server) createMessage(c *call) {
	var b messageBody
	if !c.decode(&b) {
		return
	}
	ct, e := checkMessage(&b, channelMessageFlags, true)
	if e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.channelLocked()
	if ch == nil {
		return
	}
	m := &Message{Author: s.opts.ApplicationID, Content: ct.text, Embeds: ct.embeds, Components: ct.components, Flags: ct.flags}
	if r := b.MessageReference; r != nil && r.MessageID != "" {
		if ch.byID[r.MessageID] == nil {
			var f formErrors
			f.add("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
			c.fail(f.err())
			return
		}
		m.ReferenceID, m.Type = r.MessageID, 19
	}
	m.ChannelID, m.GuildID = ch.ID, ch.GuildID
	s.applyMentionsLocked(m, ct.mentions)
	s.postLocked(ch, m)
	c.ok(http.StatusOK, s.wireMessageLocked(m))
}

// messageLocked resolves {channel_id}/{message_id}, failing with 10003/10008.
func (c *call) messageLocked() (*channel, *Message) {
	ch := c.channelLocked()
	if ch == nil {
		return nil, nil
	}
	m := ch.byID[c.p("message_id")]
	if m == nil {
		c.fail(errUnknownMessage())
		return nil, nil
	}
	return ch, m
}

func (s *Server) getMessage(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, m := c.messageLocked(); m != nil {
		c.ok(http.StatusOK, s.wireMessageForLocked(m, s.restContentLocked()))
	}
}

func (s *Server) editMessage(c *call) {
	var b messageBody
	if !c.decode(&b) {
		return
	}
	ct, e := checkMessage(&b, channelMessageFlags, false)
	if e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, m := c.messageLocked()
	if m == nil {
		return
	}
	if m.Author != s.opts.ApplicationID || m.ApplicationID != "" {
		c.fail(&apiError{http.StatusForbidden, 50005, "Cannot edit a message authored by another user", nil})
		return
	}
	if e := s.applyEditLocked(m, ct); e != nil {
		c.fail(e)
		return
	}
	c.ok(http.StatusOK, s.wireMessageLocked(m))
}

func (s *Server) deleteMessage(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := c.messageLocked()
	if m == nil {
		return
	}
	s.deleteMessageLocked(ch, m)
	c.ok(http.StatusNoContent, nil)
}

// deleteMessageLocked removes m and dispatches MESSAGE_DELETE.
func (s *Server) deleteMessageLocked(ch *channel, m *Message) {
	for i, x := range ch.msgs {
		if x == m {
			ch.msgs = append(ch.msgs[:i:i], ch.msgs[i+1:]...)
			break
		}
	}
	delete(ch.byID, m.ID)
	intent := IntentGuildMessages
	if ch.GuildID == "" {
		intent = IntentDirectMessages
	}
	s.dispatchLocked("MESSAGE_DELETE", intent, func(bool) any {
		o := obj{"id": m.ID, "channel_id": ch.ID}
		if ch.GuildID != "" {
			o["guild_id"] = ch.GuildID
		}
		return o
	})
	s.notifyLocked()
}

func (s *Server) addReaction(c *call)    { s.react(c, true) }
func (s *Server) removeReaction(c *call) { s.react(c, false) }

func (s *Server) react(c *call, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, m := c.messageLocked()
	if m == nil {
		return
	}
	emoji := c.p("emoji")
	if emoji == "" {
		c.fail(&apiError{http.StatusBadRequest, 10014, "Unknown Emoji", nil})
		return
	}
	if m.Reactions == nil {
		m.Reactions = map[string][]string{}
	}
	users := m.Reactions[emoji]
	me := s.opts.ApplicationID
	switch {
	case add && !slices.Contains(users, me):
		m.Reactions[emoji] = append(users, me)
	case !add:
		var keep []string
		for _, u := range users {
			if u != me {
				keep = append(keep, u)
			}
		}
		if len(keep) == 0 {
			delete(m.Reactions, emoji)
		} else {
			m.Reactions[emoji] = keep
		}
	}
	s.notifyLocked()
	c.ok(http.StatusNoContent, nil)
}

func (s *Server) typing(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.channelLocked() != nil {
		c.ok(http.StatusNoContent, nil)
	}
}

// PostMessage posts content as a human user in a channel or thread (by ID
// or name) and dispatches MESSAGE_CREATE. It returns the message ID.
func (s *Server) PostMessage(userID, channelRef, text string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.resolveUserLocked(userID)
	if u == nil {
		return "", errorf("no user %q", userID)
	}
	ch := s.resolveChannelLocked(channelRef)
	if ch == nil {
		return "", errorf("no channel %q", channelRef)
	}
	if text == "" {
		return "", errorf("cannot send an empty message")
	}
	m := &Message{Author: u.ID, Content: text, GuildID: ch.GuildID}
	s.applyMentionsLocked(m, nil)
	s.postLocked(ch, m)
	return m.ID, nil
}

// React adds emoji (a unicode emoji) from userID to a message.
func (s *Server) React(userID, messageID, emoji string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.findMessageLocked(messageID)
	if m == nil || m.VisibleTo != "" {
		return errorf("no message %s", messageID)
	}
	if m.Reactions == nil {
		m.Reactions = map[string][]string{}
	}
	if !slices.Contains(m.Reactions[emoji], userID) {
		m.Reactions[emoji] = append(m.Reactions[emoji], userID)
	}
	s.notifyLocked()
	return nil
}
