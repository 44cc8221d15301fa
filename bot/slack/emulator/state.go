package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// User is a workspace member known to the emulator.
type User struct {
	ID       string // "U…"; minted by AddUser when empty
	Name     string // handle, e.g. "alice"
	RealName string // e.g. "Alice Example"
	Email    string
	IsBot    bool
	IsAdmin  bool
}

// UserGroup is a Slack user group ("subteam"), mentioned as <!subteam^S…>.
type UserGroup struct {
	ID      string // "S…"; minted by AddUserGroup when empty
	Handle  string // e.g. "oncall"
	Name    string // display name; defaults to Handle
	Members []string
}

// Channel is a public channel, or (IsIM) the bot's direct-message
// conversation with one user, created when the bot posts to a user ID or
// calls conversations.open.
type Channel struct {
	ID   string
	Name string // without '#'; "@alice" for a DM
	IsIM bool
	User string // the other party of a DM
}

// Revision is an earlier version of an edited message.
type Revision struct {
	Text        string
	Blocks      json.RawMessage
	Attachments json.RawMessage
	// Replaced is when the edit that replaced this version was applied.
	Replaced time.Time
}

// Message is a stored channel message. Values returned by the Server are
// copies; changing them does not change the emulator's state.
type Message struct {
	Channel     string
	TS          string
	ThreadTS    string // parent ts for thread replies, "" for roots
	User        string // author user ID (the bot user for bot posts)
	BotID       string // set for the bot's own posts and for webhook posts
	AppID       string
	Username    string // display-name override (webhooks, chat:write.customize)
	SubType     string // "" or "bot_message"
	Text        string
	Blocks      json.RawMessage // as stored: block_id filled in
	Attachments json.RawMessage // as stored: colours mapped, ids set
	Edits       int             // number of chat.update calls applied
	Edited      time.Time       // when the latest edit was applied (zero: never edited)
	History     []Revision      // earlier versions, oldest first
	Replies     []string        // ts of thread replies (roots only)
	Reactions   map[string][]string

	editedTS string
}

// Ephemeral is a message only one user can see (chat.postEphemeral, or a
// response_url / slash-command ack reply).
type Ephemeral struct {
	Channel     string
	User        string // who sees it
	TS          string // message_ts
	ThreadTS    string
	Text        string
	Blocks      json.RawMessage
	Attachments json.RawMessage
}

// View is a modal opened by the bot with views.open (or pushed by a
// view_submission ack).
type View struct {
	ID              string
	User            string // user the modal is shown to
	CallbackID      string
	PrivateMetadata string
	ExternalID      string
	Title           string
	Hash            string
	RootViewID      string
	Open            bool              // false once submitted/closed/cleared
	Errors          map[string]string // from a response_action "errors" ack
	JSON            json.RawMessage   // the full view object as Slack returns it
}

type channel struct {
	Channel
	msgs []*Message          // in ts order, roots and replies
	byTS map[string]*Message // ts → message
}

type viewState struct {
	View
	obj map[string]any // the full view object
}

type trigger struct {
	user    string
	expires int64 // unix micro, 0 = never
	used    bool
}

// responseURL is a minted response_url for a slash command or block action.
type responseURL struct {
	user, channel, msgTS, threadTS string
	ephemeral                      bool
	uses                           int
	created                        time.Time
}

// Slack's documented response_url budget: up to 5 uses within 30 minutes.
const (
	responseURLUses = 5
	responseURLTTL  = 30 * time.Minute
)

// newID mints an ID in Slack's shape: a prefix letter and 10 base-36 chars.
// Caller holds s.mu.
func (s *Server) newID(prefix string) string {
	s.seq++
	n := strings.ToUpper(strconv.FormatInt(int64(s.seq)+36*36*36*36*36, 36))
	return prefix + "0" + strings.Repeat("0", max(0, 9-len(n))) + n
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// nextTS returns a fresh message timestamp "1700000000.000100", strictly
// increasing across the whole workspace (so unique per channel). Caller holds s.mu.
func (s *Server) nextTS() string {
	us := s.now().UnixMicro()
	if us <= s.lastTS {
		us = s.lastTS + 1
	}
	s.lastTS = us
	return fmtTS(us)
}

func fmtTS(us int64) string { return fmt.Sprintf("%d.%06d", us/1e6, us%1e6) }

// newTriggerID mints a one-shot trigger_id for user. Caller holds s.mu.
func (s *Server) newTriggerID(user string) string {
	now := s.now()
	id := fmt.Sprintf("%d.%d.%s", now.UnixMilli(), 1000000000+s.seq, randHex(32))
	s.seq++
	t := &trigger{user: user}
	if s.opts.TriggerTTL > 0 {
		t.expires = now.Add(s.opts.TriggerTTL).UnixMicro()
	}
	s.triggers[id] = t
	return id
}

// newResponseURL mints a response_url on this server. Caller holds s.mu.
func (s *Server) newResponseURL(kind string, r *responseURL) string {
	key := fmt.Sprintf("%s/%s/%d/%s", kind, s.opts.TeamID, 1000000000+s.seq, randHex(24))
	s.seq++
	r.created = s.now()
	s.responseURLs[key] = r
	return s.url + "hooks/" + key
}

// AddUser registers a user and returns its ID (minted when u.ID is empty).
func (s *Server) AddUser(u User) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.ID == "" {
		u.ID = s.newID("U")
	}
	if u.Name == "" {
		u.Name = strings.ToLower(u.ID)
	}
	if u.RealName == "" {
		u.RealName = u.Name
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

// AddUserGroup registers a user group and returns its ID (minted when g.ID is empty).
func (s *Server) AddUserGroup(g UserGroup) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.ID == "" {
		g.ID = s.newID("S")
	}
	if g.Name == "" {
		g.Name = g.Handle
	}
	g.Members = append([]string(nil), g.Members...)
	if _, ok := s.groups[g.ID]; !ok {
		s.groupOrder = append(s.groupOrder, g.ID)
	}
	s.groups[g.ID] = &g
	s.notifyLocked()
	return g.ID
}

// AddChannel creates a public channel (name with or without '#') and returns
// its ID. Adding an existing name returns the existing channel's ID.
func (s *Server) AddChannel(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.TrimPrefix(name, "#")
	if c := s.resolveChannel(name); c != nil {
		return c.ID
	}
	c := &channel{Channel: Channel{ID: s.newID("C"), Name: name}, byTS: map[string]*Message{}}
	s.channels[c.ID] = c
	s.chanOrder = append(s.chanOrder, c.ID)
	s.notifyLocked()
	return c.ID
}

// Channels returns all channels in creation order.
func (s *Server) Channels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Channel, 0, len(s.chanOrder))
	for _, id := range s.chanOrder {
		out = append(out, s.channels[id].Channel)
	}
	return out
}

// ChannelID resolves "#ops", "ops" or "C…" to a channel ID, or "" if unknown.
func (s *Server) ChannelID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.resolveChannel(name); c != nil {
		return c.ID
	}
	return ""
}

// DMChannelID returns the ID of the bot's direct-message conversation with
// userID (creating it), or "" for an unknown user.
func (s *Server) DMChannelID(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u == nil {
		return ""
	}
	return s.dmLocked(u).ID
}

// resolveChannel finds a channel by ID or name. Caller holds s.mu.
func (s *Server) resolveChannel(ref string) *channel {
	if c, ok := s.channels[ref]; ok {
		return c
	}
	name := strings.TrimPrefix(ref, "#")
	for _, id := range s.chanOrder {
		if c := s.channels[id]; c.Name == name {
			return c
		}
	}
	return nil
}

// dmLocked returns the bot's DM channel with user, creating it. Caller holds s.mu.
func (s *Server) dmLocked(u *User) *channel {
	for _, id := range s.chanOrder {
		if c := s.channels[id]; c.IsIM && c.User == u.ID {
			return c
		}
	}
	c := &channel{Channel: Channel{ID: s.newID("D"), Name: "@" + u.Name, IsIM: true, User: u.ID}, byTS: map[string]*Message{}}
	s.channels[c.ID] = c
	s.chanOrder = append(s.chanOrder, c.ID)
	s.notifyLocked()
	return c
}

// storeMessage appends m (TS already set) to its channel. Caller holds s.mu.
func (s *Server) storeMessage(c *channel, m *Message) {
	c.msgs = append(c.msgs, m)
	c.byTS[m.TS] = m
	if m.ThreadTS != "" {
		if p := c.byTS[m.ThreadTS]; p != nil {
			p.Replies = append(p.Replies, m.TS)
		}
	}
	s.notifyLocked()
}

func copyMessage(m *Message) Message {
	c := *m
	c.History = append([]Revision(nil), m.History...)
	c.Replies = append([]string(nil), m.Replies...)
	if m.Reactions != nil {
		c.Reactions = map[string][]string{}
		for k, v := range m.Reactions {
			c.Reactions[k] = append([]string(nil), v...)
		}
	}
	return c
}

func (s *Server) collect(channelRef string, keep func(*Message) bool) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.resolveChannel(channelRef)
	if c == nil {
		return nil
	}
	var out []Message
	for _, m := range c.msgs {
		if keep(m) {
			out = append(out, copyMessage(m))
		}
	}
	return out
}

// Messages returns the channel's top-level messages (not thread replies),
// oldest first. The channel may be given by ID or name.
func (s *Server) Messages(channelID string) []Message {
	return s.collect(channelID, func(m *Message) bool { return m.ThreadTS == "" })
}

// AllMessages returns every message in the channel, replies included, in ts order.
func (s *Server) AllMessages(channelID string) []Message {
	return s.collect(channelID, func(*Message) bool { return true })
}

// Replies returns the replies in the thread rooted at threadTS (without the
// root), oldest first.
func (s *Server) Replies(channelID, threadTS string) []Message {
	return s.collect(channelID, func(m *Message) bool { return m.ThreadTS == threadTS })
}

// Message returns one message (root or reply) by channel and ts.
func (s *Server) Message(channelID, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.resolveChannel(channelID)
	if c == nil || c.byTS[ts] == nil {
		return Message{}, false
	}
	return copyMessage(c.byTS[ts]), true
}

// Ephemerals returns the ephemeral messages shown to userID, oldest first.
func (s *Server) Ephemerals(userID string) []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ephemeral(nil), s.ephemerals[userID]...)
}

// Views returns every view the bot opened or pushed, in order, open or not.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]View, 0, len(s.viewOrder))
	for _, id := range s.viewOrder {
		out = append(out, s.views[id].View)
	}
	return out
}

// View returns one view by ID.
func (s *Server) View(id string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.views[id]
	if !ok {
		return View{}, false
	}
	return v.View, true
}

// Calls returns how many times a Web API method was called (whatever the
// outcome). Incoming-webhook posts count as "incoming-webhook".
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// RateLimited returns how many requests were answered with HTTP 429.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rateLimited
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
