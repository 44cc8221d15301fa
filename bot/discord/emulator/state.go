package emulator

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// discordEpoch is the first millisecond of 2015, the epoch of snowflakes.
const discordEpoch = 1420070400000

// Channel types used by the emulator.
const (
	ChannelText          = 0
	ChannelDM            = 1
	ChannelAnnouncement  = 5
	ChannelPublicThread  = 11
	ChannelPrivateThread = 12
)

// Message flags the emulator interprets.
const (
	FlagSuppressEmbeds       = 1 << 2
	FlagEphemeral            = 1 << 6
	FlagLoading              = 1 << 7
	FlagSuppressNotification = 1 << 12
	FlagComponentsV2         = 1 << 15
)

// User is a Discord user known to the emulator.
type User struct {
	ID         string // snowflake; minted by AddUser when empty
	Username   string // e.g. "alice"
	GlobalName string // display name, e.g. "Alice"; defaults to Username
	Bot        bool
}

// Guild is a Discord server. Every user is a member of every guild.
type Guild struct {
	ID      string
	Name    string
	OwnerID string
}

// Role is a guild role. The @everyone role's ID is the guild's ID.
type Role struct {
	ID          string // minted by AddRole when empty
	GuildID     string // default: the guild New created
	Name        string
	Permissions int64 // sent as a string, as Discord does
	Color       int
	Mentionable bool
	Members     []string // user IDs holding the role
}

// Channel is a guild text channel, a thread, or a DM.
type Channel struct {
	ID       string
	GuildID  string // "" for DMs
	Type     int    // ChannelText, ChannelPublicThread, …
	Name     string
	ParentID string // threads: the channel the thread is in
	OwnerID  string // threads: who started it
	// Recipient is the other party of a DM with the bot.
	Recipient string
	// Members are the users who joined a thread.
	Members             []string
	Archived            bool
	AutoArchiveDuration int
}

// Revision is an earlier version of an edited message.
type Revision struct {
	Content    string
	Embeds     json.RawMessage
	Components json.RawMessage
	Flags      int
}

// Message is a stored message: in a channel or thread, or (VisibleTo set)
// an ephemeral interaction response only one user sees. Values returned by
// the Server are copies.
type Message struct {
	ID        string
	ChannelID string
	GuildID   string
	Type      int    // 0 default, 19 reply, 20 chat-input command response
	Author    string // user ID, or the webhook's ID for webhook messages
	// Username is the author name shown (a webhook's name or override).
	Username      string
	WebhookID     string // set for webhook and interaction-response messages
	ApplicationID string // set for interaction responses
	Content       string
	Embeds        json.RawMessage // as stored: "type":"rich" added
	Components    json.RawMessage // as stored: component ids assigned
	Flags         int
	// Mentions, MentionRoles and MentionEveryone are what the message
	// pings after allowed_mentions is applied.
	Mentions        []string
	MentionRoles    []string
	MentionEveryone bool
	Timestamp       time.Time
	EditedTimestamp time.Time
	Edits           int        // number of edits applied
	History         []Revision // earlier versions, oldest first
	ThreadID        string     // the thread started from this message
	InteractionID   string     // the interaction this message answers
	ReferenceID     string     // the message replied to
	VisibleTo       string     // ephemeral: the only user who sees it
	Reactions       map[string][]string
}

// Ephemeral reports whether only one user sees the message.
func (m Message) Ephemeral() bool { return m.VisibleTo != "" }

type channel struct {
	Channel
	msgs []*Message
	byID map[string]*Message
}

// snowflakeLocked mints a snowflake from Now, strictly increasing. Caller
// holds s.mu.
func (s *Server) snowflakeLocked() string {
	ms := max(s.now().UnixMilli()-discordEpoch, 0)
	id := uint64(ms) << 22
	if id <= s.lastSnowflake {
		id = s.lastSnowflake + 1
	}
	s.lastSnowflake = id
	return strconv.FormatUint(id, 10)
}

// snowflakeTime returns the creation time encoded in a snowflake.
func snowflakeTime(id string) time.Time {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(int64(n>>22) + discordEpoch).UTC()
}

// AddUser registers a user and returns its ID (minted when u.ID is empty).
func (s *Server) AddUser(u User) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.ID == "" {
		u.ID = s.snowflakeLocked()
	}
	if u.Username == "" {
		u.Username = "user" + u.ID[len(u.ID)-4:]
	}
	if u.GlobalName == "" && !u.Bot {
		u.GlobalName = u.Username
	}
	if _, ok := s.users[u.ID]; !ok {
		s.userOrder = append(s.userOrder, u.ID)
	}
	uc := u
	s.users[u.ID] = &uc
	s.notifyLocked()
	return u.ID
}

// Users returns all users in the order they were added (the bot first).
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]User, 0, len(s.userOrder))
	for _, id := range s.userOrder {
		out = append(out, *s.users[id])
	}
	return out
}

// UserID resolves a username or ID to a user ID, or "" if unknown.
func (s *Server) UserID(ref string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.resolveUserLocked(ref); u != nil {
		return u.ID
	}
	return ""
}

func (s *Server) resolveUserLocked(ref string) *User {
	if u, ok := s.users[ref]; ok {
		return u
	}
	ref = strings.TrimPrefix(ref, "@")
	for _, id := range s.userOrder {
		if s.users[id].Username == ref {
			return s.users[id]
		}
	}
	return nil
}

// AddGuild creates a guild owned by the first human user (or the bot) with
// its @everyone role, and returns its ID.
func (s *Server) AddGuild(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &Guild{ID: s.snowflakeLocked(), Name: name, OwnerID: s.opts.ApplicationID}
	s.guilds[g.ID] = g
	s.guildOrder = append(s.guildOrder, g.ID)
	s.roles[g.ID] = &Role{ID: g.ID, GuildID: g.ID, Name: "@everyone", Permissions: 1071698660929}
	s.roleOrder = append(s.roleOrder, g.ID)
	s.notifyLocked()
	return g.ID
}

// Guilds returns all guilds in creation order.
func (s *Server) Guilds() []Guild {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Guild, 0, len(s.guildOrder))
	for _, id := range s.guildOrder {
		out = append(out, *s.guilds[id])
	}
	return out
}

// AddRole registers a role (in the default guild unless r.GuildID is set)
// and returns its ID.
func (s *Server) AddRole(r Role) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.GuildID == "" {
		r.GuildID = s.guildID
	}
	if r.ID == "" {
		r.ID = s.snowflakeLocked()
	}
	r.Members = append([]string(nil), r.Members...)
	if _, ok := s.roles[r.ID]; !ok {
		s.roleOrder = append(s.roleOrder, r.ID)
	}
	s.roles[r.ID] = &r
	s.notifyLocked()
	return r.ID
}

// GrantRole gives userID the role roleID.
func (s *Server) GrantRole(roleID, userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.roles[roleID]; r != nil && !slices.Contains(r.Members, userID) {
		r.Members = append(r.Members, userID)
		s.notifyLocked()
	}
}

// Roles returns the roles of a guild ("" = the default guild), @everyone first.
func (s *Server) Roles(guildID string) []Role {
	s.mu.Lock()
	defer s.mu.Unlock()
	if guildID == "" {
		guildID = s.guildID
	}
	var out []Role
	for _, id := range s.roleOrder {
		if r := s.roles[id]; r.GuildID == guildID {
			rc := *r
			rc.Members = append([]string(nil), r.Members...)
			out = append(out, rc)
		}
	}
	return out
}

// memberRolesLocked lists the role IDs userID holds in guildID (without
// @everyone). Caller holds s.mu.
func (s *Server) memberRolesLocked(guildID, userID string) []string {
	out := []string{}
	for _, id := range s.roleOrder {
		if r := s.roles[id]; r.GuildID == guildID && r.ID != guildID && slices.Contains(r.Members, userID) {
			out = append(out, r.ID)
		}
	}
	return out
}

// AddChannel creates a text channel in the default guild (name with or
// without '#') and returns its ID; an existing name returns the existing ID.
func (s *Server) AddChannel(name string) string { return s.AddGuildChannel(s.guildID, name) }

// AddGuildChannel creates a text channel in guildID and returns its ID.
func (s *Server) AddGuildChannel(guildID, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.TrimPrefix(name, "#")
	for _, id := range s.chanOrder {
		if c := s.channels[id]; c.GuildID == guildID && c.Name == name && c.Type == ChannelText {
			return c.ID
		}
	}
	c := s.newChannelLocked(Channel{ID: s.snowflakeLocked(), GuildID: guildID, Type: ChannelText, Name: name})
	return c.ID
}

func (s *Server) newChannelLocked(ch Channel) *channel {
	c := &channel{Channel: ch, byID: map[string]*Message{}}
	s.channels[c.ID] = c
	s.chanOrder = append(s.chanOrder, c.ID)
	s.notifyLocked()
	return c
}

// Channels returns all channels and threads in creation order.
func (s *Server) Channels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Channel, 0, len(s.chanOrder))
	for _, id := range s.chanOrder {
		out = append(out, copyChannel(s.channels[id]))
	}
	return out
}

func copyChannel(c *channel) Channel {
	ch := c.Channel
	ch.Members = append([]string(nil), c.Members...)
	return ch
}

// Channel returns one channel or thread by ID or name.
func (s *Server) Channel(ref string) (Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.resolveChannelLocked(ref)
	if c == nil {
		return Channel{}, false
	}
	return copyChannel(c), true
}

// ChannelID resolves "#ops", "ops" or an ID to a channel ID, or "".
func (s *Server) ChannelID(ref string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.resolveChannelLocked(ref); c != nil {
		return c.ID
	}
	return ""
}

// Threads returns the threads whose parent is channelRef, oldest first.
func (s *Server) Threads(channelRef string) []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.resolveChannelLocked(channelRef)
	if p == nil {
		return nil
	}
	var out []Channel
	for _, id := range s.chanOrder {
		if c := s.channels[id]; c.ParentID == p.ID {
			out = append(out, copyChannel(c))
		}
	}
	return out
}

// resolveChannelLocked finds a channel by ID or name. Caller holds s.mu.
func (s *Server) resolveChannelLocked(ref string) *channel {
	if c, ok := s.channels[ref]; ok {
		return c
	}
	name := strings.TrimPrefix(ref, "#")
	for _, id := range s.chanOrder {
		if c := s.channels[id]; c.Name == name && c.Type != ChannelDM {
			return c
		}
	}
	return nil
}

// dmLocked returns the bot's DM channel with user, creating it.
func (s *Server) dmLocked(userID string) *channel {
	for _, id := range s.chanOrder {
		if c := s.channels[id]; c.Type == ChannelDM && c.Recipient == userID {
			return c
		}
	}
	return s.newChannelLocked(Channel{ID: s.snowflakeLocked(), Type: ChannelDM, Recipient: userID})
}

// DMChannelID returns the ID of the bot's DM channel with userID (creating
// it), or "" for an unknown user.
func (s *Server) DMChannelID(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[userID] == nil {
		return ""
	}
	return s.dmLocked(userID).ID
}

// storeMessageLocked appends m to its channel. Caller holds s.mu.
func (s *Server) storeMessageLocked(c *channel, m *Message) {
	c.msgs = append(c.msgs, m)
	c.byID[m.ID] = m
	s.notifyLocked()
}

func copyMessage(m *Message) Message {
	c := *m
	c.History = append([]Revision(nil), m.History...)
	c.Mentions = append([]string(nil), m.Mentions...)
	c.MentionRoles = append([]string(nil), m.MentionRoles...)
	if m.Reactions != nil {
		c.Reactions = map[string][]string{}
		for k, v := range m.Reactions {
			c.Reactions[k] = append([]string(nil), v...)
		}
	}
	return c
}

// Messages returns the messages of a channel or thread (by ID or name),
// oldest first. Ephemeral messages are not in channels; see Ephemerals.
func (s *Server) Messages(channelRef string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.resolveChannelLocked(channelRef)
	if c == nil {
		return nil
	}
	out := make([]Message, 0, len(c.msgs))
	for _, m := range c.msgs {
		out = append(out, copyMessage(m))
	}
	return out
}

// Message returns one message by ID: a channel message, or an ephemeral one.
func (s *Server) Message(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.findMessageLocked(id); m != nil {
		return copyMessage(m), true
	}
	return Message{}, false
}

// findMessageLocked looks a message up in every channel and every user's
// ephemerals. Caller holds s.mu.
func (s *Server) findMessageLocked(id string) *Message {
	for _, c := range s.channels {
		if m := c.byID[id]; m != nil {
			return m
		}
	}
	for _, list := range s.ephemerals {
		for _, m := range list {
			if m.ID == id {
				return m
			}
		}
	}
	return nil
}

// Ephemerals returns the ephemeral messages shown to userID, oldest first.
func (s *Server) Ephemerals(userID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, len(s.ephemerals[userID]))
	for _, m := range s.ephemerals[userID] {
		out = append(out, copyMessage(m))
	}
	return out
}

// Calls returns how many requests matched a REST route, e.g.
// "POST /channels/{channel_id}/messages" (see the route table in rest.go),
// whatever their outcome. Unmatched requests count as "unknown".
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

// CallCounts returns a copy of all per-route call counts.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// RateLimited returns how many requests were answered with HTTP 429
// (per-route and global).
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rateLimited
}

// GlobalRateLimited returns how many of those 429s were for the global limit.
func (s *Server) GlobalRateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.globalHits
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("discordemu: "+format, args...)
}
