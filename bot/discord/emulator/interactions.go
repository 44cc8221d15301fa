package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Interaction types.
const (
	InteractionPing         = 1
	InteractionCommand      = 2
	InteractionComponent    = 3
	InteractionAutocomplete = 4
	InteractionModalSubmit  = 5
)

// Interaction response (callback) types.
const (
	ResponsePong                   = 1
	ResponseChannelMessage         = 4
	ResponseDeferredChannelMessage = 5
	ResponseDeferredUpdateMessage  = 6
	ResponseUpdateMessage          = 7
	ResponseAutocompleteResult     = 8
	ResponseModal                  = 9
)

// interactionFlags are the flags an interaction response or follow-up may set.
const interactionFlags = FlagEphemeral | FlagSuppressEmbeds | FlagSuppressNotification | FlagComponentsV2

// Interaction is what the emulator knows about one interaction it sent.
type Interaction struct {
	ID          string
	Token       string
	Type        int // InteractionCommand, InteractionComponent, …
	User        string
	ChannelID   string
	GuildID     string
	CommandName string // application commands and autocomplete
	CustomID    string // components and modal submits
	Values      []string
	MessageID   string // the message a component sits on

	Acked        bool
	ResponseType int  // the callback type received, 0 if none
	Failed       bool // not answered in time: the user saw "This interaction failed"
	// AckLatency is measured over the wire: from writing INTERACTION_CREATE
	// to the gateway socket to receiving the callback request. Zero until
	// both happened.
	AckLatency time.Duration
	OriginalID string   // the @original message, once there is one
	Followups  []string // follow-up message IDs
	// Choices is the autocomplete result (type 8) as received.
	Choices json.RawMessage
	// Rejected counts callbacks answered with an error.
	Rejected int
}

type interaction struct {
	Interaction
	data       obj      // the interaction's "data"
	message    *Message // the component's message (components, modals opened from them)
	createdAt  time.Time
	dispatched time.Time
	ackedAt    time.Time
	timer      *time.Timer
	deferred   bool // type 5 whose @original still shows "thinking"
	ephemeral  bool // the @original is ephemeral
}

func newToken() string {
	b := make([]byte, 96)
	_, _ = rand.Read(b)
	return "aW50ZXJhY3Rpb246" + base64.RawURLEncoding.EncodeToString(b)
}

// Interactions returns every interaction sent, oldest first.
func (s *Server) Interactions() []Interaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Interaction, 0, len(s.intOrder))
	for _, id := range s.intOrder {
		out = append(out, copyInteraction(s.interactions[id]))
	}
	return out
}

// Interaction returns one interaction by ID.
func (s *Server) Interaction(id string) (Interaction, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.interactions[id]
	if in == nil {
		return Interaction{}, false
	}
	return copyInteraction(in), true
}

func copyInteraction(in *interaction) Interaction {
	c := in.Interaction
	c.Values = append([]string(nil), in.Values...)
	c.Followups = append([]string(nil), in.Followups...)
	return c
}

// AckLatencies returns the over-the-wire ack latency of every answered
// interaction, in the order they were created.
func (s *Server) AckLatencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, id := range s.intOrder {
		if in := s.interactions[id]; in.Acked && in.AckLatency > 0 {
			out = append(out, in.AckLatency)
		}
	}
	return out
}

// markDispatched records when INTERACTION_CREATE went on the wire (the
// first delivery counts; a RESUME replay does not reset it).
func (s *Server) markDispatched(id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.interactions[id]
	if in == nil || !in.dispatched.IsZero() {
		return
	}
	in.dispatched = at
	if in.Acked && in.AckLatency == 0 {
		in.AckLatency = max(in.ackedAt.Sub(at), time.Nanosecond)
		s.notifyLocked()
	}
}

// startInteractionLocked registers in, starts its deadline and dispatches
// INTERACTION_CREATE. Caller holds s.mu.
func (s *Server) startInteractionLocked(in *interaction) string {
	in.ID = s.snowflakeLocked()
	in.Token = newToken()
	in.createdAt = s.now()
	s.interactions[in.ID] = in
	s.byToken[in.Token] = in
	s.intOrder = append(s.intOrder, in.ID)
	id := in.ID
	in.timer = time.AfterFunc(s.opts.InteractionTimeout, func() { s.expireInteraction(id) })
	payload := s.wireInteractionLocked(in)
	s.dispatchInteractionLocked("INTERACTION_CREATE", 0, func(bool) any { return payload }, in.ID)
	s.logf("interaction %s type %d dispatched", in.ID, in.Type)
	s.notifyLocked()
	return in.ID
}

func (s *Server) expireInteraction(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.interactions[id]; in != nil && !in.Acked {
		in.Failed = true
		s.logf("interaction %s failed: no response within %v", id, s.opts.InteractionTimeout)
		s.notifyLocked()
	}
}

// wireInteractionLocked renders the INTERACTION_CREATE payload.
func (s *Server) wireInteractionLocked(in *interaction) obj {
	o := obj{
		"id": in.ID, "application_id": s.opts.ApplicationID, "type": in.Type, "token": in.Token,
		"version": 1, "channel_id": in.ChannelID, "locale": "en-US", "entitlements": []obj{},
		"app_permissions": "2248473465835073", "attachment_size_limit": 10485760,
	}
	if in.data != nil {
		o["data"] = in.data
	}
	if c := s.channels[in.ChannelID]; c != nil {
		ch := s.wireChannelLocked(c)
		delete(ch, "permission_overwrites")
		o["channel"] = ch
	}
	if in.GuildID != "" {
		o["guild_id"], o["guild_locale"], o["context"] = in.GuildID, "en-US", 0
		o["guild"] = obj{"id": in.GuildID, "locale": "en-US", "features": []string{}}
		o["authorizing_integration_owners"] = obj{"0": in.GuildID}
		m := s.wireMemberLocked(in.GuildID, in.User, true)
		m["permissions"] = itoa64(s.memberPermissionsLocked(in.GuildID, in.User))
		o["member"] = m
	} else {
		o["user"], o["context"] = s.wireUserLocked(in.User), 1
		o["authorizing_integration_owners"] = obj{"0": "0"}
	}
	if in.message != nil {
		o["message"] = s.wireMessageLocked(in.message)
	}
	return o
}

type callbackBody struct {
	Type int             `json:"type"`
	Data json.RawMessage `json:"data"`
}

// interactionCallback serves POST /interactions/{id}/{token}/callback.
func (s *Server) interactionCallback(c *call) {
	received := time.Now()
	var b callbackBody
	if !c.decode(&b) {
		return
	}
	var data messageBody
	if len(b.Data) > 0 && string(b.Data) != "null" {
		if err := json.Unmarshal(b.Data, &data); err != nil {
			c.fail(errBadJSON())
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.interactions[c.p("interaction_id")]
	if in == nil || in.Token != c.p("interaction_token") || in.Failed {
		c.fail(errUnknownInteraction())
		return
	}
	if in.Acked {
		in.Rejected++
		c.fail(errAlreadyAcked())
		return
	}
	if e := s.respondLocked(in, b.Type, &data); e != nil {
		in.Rejected++
		s.notifyLocked()
		c.fail(e)
		return
	}
	in.timer.Stop()
	in.Acked, in.ResponseType, in.ackedAt = true, b.Type, received
	if !in.dispatched.IsZero() {
		in.AckLatency = max(received.Sub(in.dispatched), time.Nanosecond)
	}
	s.notifyLocked()
	if c.query.Get("with_response") == "true" {
		res := obj{"interaction": obj{"id": in.ID, "type": in.Type, "response_message_loading": b.Type == 5,
			"response_message_ephemeral": in.ephemeral}}
		if m := s.findMessageLocked(in.OriginalID); m != nil && (b.Type == 4 || b.Type == 5 || b.Type == 7) {
			res["resource"] = obj{"type": b.Type, "message": s.wireMessageLocked(m)}
		} else {
			res["resource"] = obj{"type": b.Type}
		}
		c.ok(http.StatusOK, res)
		return
	}
	c.ok(http.StatusNoContent, nil)
}

func invalidType(msg string) *apiError {
	var f formErrors
	f.add("type", "INTERACTION_RESPONSE_TYPE_INVALID", msg)
	return f.err()
}

// respondLocked applies a callback of type typ to in. Caller holds s.mu.
func (s *Server) respondLocked(in *interaction, typ int, data *messageBody) *apiError {
	fromComponent := in.Type == InteractionComponent || in.Type == InteractionModalSubmit && in.message != nil
	switch typ {
	case ResponseChannelMessage, ResponseDeferredChannelMessage:
		if in.Type == InteractionAutocomplete {
			return invalidType("Interaction response type is invalid for this interaction")
		}
		if typ == ResponseDeferredChannelMessage {
			if data.Flags != nil && *data.Flags&^FlagEphemeral != 0 {
				var f formErrors
				f.add("data.flags", "MESSAGE_FLAGS_INVALID", "Only EPHEMERAL may be set on a deferred response")
				return f.err()
			}
			m := &Message{Flags: FlagLoading}
			if data.Flags != nil {
				m.Flags |= *data.Flags
			}
			in.deferred = true
			s.createResponseLocked(in, m)
			return nil
		}
		ct, e := checkMessage(data, interactionFlags, true)
		if e != nil {
			return prefixData(e)
		}
		m := &Message{Content: ct.text, Embeds: ct.embeds, Components: ct.components, Flags: ct.flags, GuildID: in.GuildID}
		s.applyMentionsLocked(m, ct.mentions)
		s.createResponseLocked(in, m)
		return nil
	case ResponseDeferredUpdateMessage, ResponseUpdateMessage:
		if !fromComponent || in.message == nil {
			return invalidType("Interaction response type is only valid for message component interactions")
		}
		in.OriginalID, in.ephemeral = in.message.ID, in.message.VisibleTo != ""
		if typ == ResponseDeferredUpdateMessage {
			return nil
		}
		ct, e := checkMessage(data, interactionFlags&^FlagEphemeral, false)
		if e != nil {
			return prefixData(e)
		}
		m := s.findMessageLocked(in.message.ID)
		if m == nil {
			return errUnknownMessage()
		}
		if e := s.applyEditLocked(m, ct); e != nil {
			return e
		}
		return nil
	case ResponseAutocompleteResult:
		if in.Type != InteractionAutocomplete {
			return invalidType("Interaction response type is invalid for this interaction")
		}
		var choices []CommandChoice
		if len(data.Choices) > 0 && string(data.Choices) != "null" {
			if err := json.Unmarshal(data.Choices, &choices); err != nil {
				return errBadJSON()
			}
		}
		var f formErrors
		if len(choices) > 25 {
			f.add("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
		}
		for i, ch := range choices {
			f.between("data.choices."+itoa(i)+".name", ch.Name, 1, 100)
			if v, ok := ch.Value.(string); ok {
				f.maxLen("data.choices."+itoa(i)+".value", v, 100)
			}
		}
		if e := f.err(); e != nil {
			return e
		}
		in.Choices = mustJSON(choices)
		return nil
	case ResponseModal:
		if in.Type == InteractionModalSubmit || in.Type == InteractionAutocomplete {
			return invalidType("Interaction response type is invalid for this interaction")
		}
		comps, e := checkModal(data)
		if e != nil {
			return e
		}
		md := &Modal{ID: s.snowflakeLocked(), InteractionID: in.ID, User: in.User, ChannelID: in.ChannelID,
			CustomID: data.CustomID, Title: data.Title, Components: comps, Open: true}
		if in.message != nil {
			md.MessageID = in.message.ID
		}
		s.modals = append(s.modals, md)
		return nil
	case ResponsePong:
		return invalidType("PONG is only valid for PING interactions")
	default:
		return invalidType("Value must be one of {4, 5, 6, 7, 8, 9}.")
	}
}

// prefixData moves form errors under "data", as the callback nests them.
func prefixData(e *apiError) *apiError {
	if e.errors != nil {
		e.errors = obj{"data": e.errors}
	}
	return e
}

// createResponseLocked stores the interaction's @original message: in the
// channel, or as an ephemeral for the user. Caller holds s.mu.
func (s *Server) createResponseLocked(in *interaction, m *Message) {
	m.Author, m.ApplicationID, m.InteractionID = s.opts.ApplicationID, s.opts.ApplicationID, in.ID
	m.WebhookID = s.opts.ApplicationID
	if in.Type == InteractionCommand {
		m.Type = 20
	} else {
		m.Type = 0
	}
	in.OriginalID = s.storeResponseLocked(in, m)
	in.ephemeral = m.Flags&FlagEphemeral != 0
}

// storeResponseLocked stores a response or follow-up and returns its ID.
func (s *Server) storeResponseLocked(in *interaction, m *Message) string {
	if m.Flags&FlagEphemeral != 0 {
		m.ID = s.snowflakeLocked()
		m.ChannelID, m.GuildID, m.VisibleTo = in.ChannelID, in.GuildID, in.User
		m.Timestamp = snowflakeTime(m.ID)
		s.ephemerals[in.User] = append(s.ephemerals[in.User], m)
		s.notifyLocked()
		return m.ID
	}
	if c := s.channels[in.ChannelID]; c != nil {
		s.postLocked(c, m)
	}
	return m.ID
}

// Modal is a modal the bot opened for a user.
type Modal struct {
	ID            string // emulator-side ID, for SubmitModal / CloseModal
	InteractionID string // the interaction answered with the modal
	User          string
	ChannelID     string
	MessageID     string // the message whose component opened it, if any
	CustomID      string
	Title         string
	Components    json.RawMessage // as stored: ids assigned
	Open          bool            // false once submitted or closed
}

// Modals returns every modal opened for userID ("" = all users), oldest first.
func (s *Server) Modals(userID string) []Modal {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Modal
	for _, m := range s.modals {
		if userID == "" || m.User == userID {
			out = append(out, *m)
		}
	}
	return out
}

// OpenModal returns the modal currently shown to userID, if any.
func (s *Server) OpenModal(userID string) (Modal, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.modals) - 1; i >= 0; i-- {
		if m := s.modals[i]; m.User == userID && m.Open {
			return *m, true
		}
	}
	return Modal{}, false
}

func itoa(n int) string     { return strconv.Itoa(n) }
func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
