package emulator

import (
	"net/http"
	"slices"
	"strings"
)

type threadBody struct {
	Name                string `json:"name"`
	AutoArchiveDuration int    `json:"auto_archive_duration"`
	Type                *int   `json:"type"`
	Invitable           *bool  `json:"invitable"`
	RateLimitPerUser    int    `json:"rate_limit_per_user"`
}

// check validates the body like Discord: name 1–100, duration one of
// 60, 1440, 4320, 10080 (default 4320? Discord uses the channel default,
// 1440 here).
func (b *threadBody) check() *apiError {
	var f formErrors
	b.Name = strings.TrimSpace(b.Name)
	if b.Name == "" {
		f.required("name")
	} else {
		f.between("name", b.Name, 1, 100)
	}
	switch b.AutoArchiveDuration {
	case 0:
		b.AutoArchiveDuration = 1440
	case 60, 1440, 4320, 10080:
	default:
		f.add("auto_archive_duration", "BASE_TYPE_CHOICES", "Value must be one of {60, 1440, 4320, 10080}.")
	}
	return f.err()
}

// startThreadFromMessage serves POST /channels/{c}/messages/{m}/threads:
// a public thread whose ID is the message's ID.
func (s *Server) startThreadFromMessage(c *call) {
	var b threadBody
	if !c.decode(&b) {
		return
	}
	if e := b.check(); e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parent, m := c.messageLocked()
	if m == nil {
		return
	}
	typ := ChannelPublicThread
	switch parent.Type {
	case ChannelText:
	case ChannelAnnouncement:
		typ = 10
	default:
		c.fail(&apiError{http.StatusBadRequest, 50024, "Cannot execute action on this channel type", nil})
		return
	}
	if m.ThreadID != "" || s.channels[m.ID] != nil {
		c.fail(errThreadExists())
		return
	}
	t := s.newThreadLocked(parent, m.ID, typ, b)
	m.ThreadID = t.ID
	s.dispatchMessageLocked("MESSAGE_UPDATE", parent, m)
	c.ok(http.StatusCreated, s.wireChannelLocked(t))
}

// startThread serves POST /channels/{c}/threads (a thread without a
// message). In API v9 the type defaults to a private thread.
func (s *Server) startThread(c *call) {
	var b threadBody
	if !c.decode(&b) {
		return
	}
	e := b.check()
	typ := ChannelPrivateThread
	if b.Type != nil {
		typ = *b.Type
	}
	if e == nil && typ != ChannelPublicThread && typ != ChannelPrivateThread && typ != 10 {
		var f formErrors
		f.add("type", "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.")
		e = f.err()
	}
	if e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parent := c.channelLocked()
	if parent == nil {
		return
	}
	if parent.Type != ChannelText && parent.Type != ChannelAnnouncement {
		c.fail(&apiError{http.StatusBadRequest, 50024, "Cannot execute action on this channel type", nil})
		return
	}
	t := s.newThreadLocked(parent, s.snowflakeLocked(), typ, b)
	if typ == ChannelPublicThread {
		// Discord announces a public thread without a message in the parent.
		s.postLocked(parent, &Message{Author: s.opts.ApplicationID, Type: 18, Content: t.Name})
	}
	c.ok(http.StatusCreated, s.wireChannelLocked(t))
}

// newThreadLocked creates a thread owned (and joined) by the bot and
// dispatches THREAD_CREATE. Caller holds s.mu.
func (s *Server) newThreadLocked(parent *channel, id string, typ int, b threadBody) *channel {
	t := s.newChannelLocked(Channel{
		ID: id, GuildID: parent.GuildID, Type: typ, Name: b.Name, ParentID: parent.ID,
		OwnerID: s.opts.ApplicationID, Members: []string{s.opts.ApplicationID},
		AutoArchiveDuration: b.AutoArchiveDuration,
	})
	s.dispatchLocked("THREAD_CREATE", IntentGuilds, func(bool) any {
		o := s.wireChannelLocked(t)
		o["newly_created"] = true
		o["member"] = s.wireThreadMemberLocked(t, s.opts.ApplicationID)
		return o
	})
	return t
}

func (s *Server) wireThreadMemberLocked(t *channel, userID string) obj {
	return obj{"id": t.ID, "user_id": userID, "join_timestamp": rfc3339(s.now()), "flags": 0}
}

// threadLocked resolves {channel_id} to a thread, failing like Discord.
func (c *call) threadLocked() *channel {
	t := c.channelLocked()
	if t == nil {
		return nil
	}
	if t.Type != ChannelPublicThread && t.Type != ChannelPrivateThread && t.Type != 10 {
		c.fail(&apiError{http.StatusBadRequest, 50024, "Cannot execute action on this channel type", nil})
		return nil
	}
	return t
}

func (s *Server) joinThread(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := c.threadLocked()
	if t == nil {
		return
	}
	s.addThreadMemberLocked(t, s.opts.ApplicationID)
	c.ok(http.StatusNoContent, nil)
}

func (s *Server) addThreadMemberLocked(t *channel, userID string) {
	if slices.Contains(t.Members, userID) {
		return
	}
	t.Members = append(t.Members, userID)
	s.notifyLocked()
	if userID == s.opts.ApplicationID {
		s.dispatchLocked("THREAD_MEMBER_UPDATE", IntentGuilds, func(bool) any {
			o := s.wireThreadMemberLocked(t, userID)
			o["guild_id"] = t.GuildID
			return o
		})
	}
}

func (s *Server) leaveThread(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := c.threadLocked()
	if t == nil {
		return
	}
	var keep []string
	for _, u := range t.Members {
		if u != s.opts.ApplicationID {
			keep = append(keep, u)
		}
	}
	t.Members = keep
	s.notifyLocked()
	c.ok(http.StatusNoContent, nil)
}

func (s *Server) listThreadMembers(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := c.threadLocked()
	if t == nil {
		return
	}
	out := []obj{}
	for _, u := range t.Members {
		out = append(out, s.wireThreadMemberLocked(t, u))
	}
	c.ok(http.StatusOK, out)
}

func (s *Server) getActiveThreads(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.guilds[c.p("guild_id")]
	if g == nil {
		c.fail(errUnknownGuild())
		return
	}
	threads, members := []obj{}, []obj{}
	for _, id := range s.chanOrder {
		t := s.channels[id]
		if t.GuildID == g.ID && t.ParentID != "" && !t.Archived {
			threads = append(threads, s.wireChannelLocked(t))
			if slices.Contains(t.Members, s.opts.ApplicationID) {
				members = append(members, s.wireThreadMemberLocked(t, s.opts.ApplicationID))
			}
		}
	}
	c.ok(http.StatusOK, obj{"threads": threads, "members": members})
}

// JoinThread adds a human user to a thread (as clicking "Join Thread").
func (s *Server) JoinThread(userID, threadID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.channels[threadID]
	if t == nil || t.ParentID == "" {
		return errorf("no thread %s", threadID)
	}
	if s.users[userID] == nil {
		return errorf("no user %q", userID)
	}
	s.addThreadMemberLocked(t, userID)
	return nil
}
