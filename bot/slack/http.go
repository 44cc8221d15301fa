package slack

// HTTP mode: for workspaces where Socket Mode is not allowed, Slack posts
// the Events API, slash commands and interactivity to one request URL.
// Every request is verified with Slack's request signing (httpsign.go),
// turned into the envelope Socket Mode would have carried, and handed to
// the same dispatch; the ack dispatch gives is the HTTP response (a slash
// command's answer rides in its body as it rides in a Socket Mode ack).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// EventsPath is where HTTP mode serves Slack's requests (as Bolt does).
const EventsPath = "/slack/events"

// HTTPOptions configure an HTTPEndpoint.
type HTTPOptions struct {
	// SigningSecret is the app's signing secret (Basic Information → App
	// Credentials). Required.
	SigningSecret string
	// Now is the clock request timestamps are checked against; default
	// time.Now.
	Now func() time.Time
}

// ErrNoSigningSecret is returned by NewHTTPEndpoint without a secret.
var ErrNoSigningSecret = errors.New("HTTP mode needs the app's signing secret (SLACK_SIGNING_SECRET)")

// maxBody bounds a request body; Slack's largest (a submitted form) are a
// few tens of kilobytes.
const maxBody = 1 << 20

// ackWait is how long a request waits for its ack before it is answered
// empty: dispatch acks at once or within AckBudget, and Slack gives up
// after 3 s.
const ackWait = 2500 * time.Millisecond

const formType = "application/x-www-form-urlencoded"

// httpEnvelope prefixes the envelope ids HTTP requests are given, so
// Client.ack knows the ack is an HTTP response.
const httpEnvelope = "http-"

// HTTPEndpoint answers Slack's HTTP requests for a Client. It is an
// http.Handler for POST EventsPath; Run owns the handlers it starts.
type HTTPEndpoint struct {
	c        *Client
	verifier verifier

	// mu is held for reading while a request is dispatched, and for
	// writing when Run stops taking requests, so no handler starts after
	// Run has begun to wait for them.
	mu      sync.RWMutex
	stopped bool

	events recent // event ids handled: retries are not handled twice
	// forms are the signatures of slash commands and interactions taken
	// within the replay window: Slack sends each once, so the same one
	// again is a replay (events are told apart by event_id instead).
	forms recent
}

// NewHTTPEndpoint serves Slack's HTTP requests through c's handlers.
func NewHTTPEndpoint(c *Client, o HTTPOptions) (*HTTPEndpoint, error) {
	if o.SigningSecret == "" {
		return nil, ErrNoSigningSecret
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &HTTPEndpoint{
		c:        c,
		verifier: verifier{secret: []byte(o.SigningSecret), now: o.Now},
		events:   recent{ttl: time.Hour, max: 100000, now: o.Now},
		forms:    recent{ttl: 2 * ReplayWindow, max: 100000, now: o.Now},
	}, nil
}

// Run serves until ctx ends, then refuses new requests (503) and returns
// once every handler a request started has finished.
func (h *HTTPEndpoint) Run(ctx context.Context) error {
	<-ctx.Done()
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.c.wg.Wait()
	return nil
}

// ServeHTTP verifies a request from Slack and answers it.
func (h *HTTPEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	err = h.verifier.verify(r.Header, body)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && ct == formType && !h.forms.add(r.Header.Get("X-Slack-Signature")) {
		err = errReplayed
	}
	if err != nil {
		// The reason is one of verify's fixed texts: no secret, no
		// signature, no body.
		h.c.log.Warn("refused a request to the Slack endpoint", "reason", err.Error(), "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	evt, answer, err := h.envelope(r.Header, body)
	switch {
	case err != nil:
		h.c.log.Warn("unreadable request on the Slack endpoint", "err", err)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	case evt == nil:
		writeAck(w, answer)
		return
	}
	id := httpEnvelope + uuid.NewString()
	evt.Request.EnvelopeID = id
	acked := make(chan any, 1)
	h.c.httpAcks.Store(id, acked)
	h.mu.RLock()
	if h.stopped {
		h.mu.RUnlock()
		h.c.httpAcks.Delete(id)
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	h.c.dispatch(context.WithoutCancel(r.Context()), *evt)
	h.mu.RUnlock()
	t := time.NewTimer(ackWait)
	defer t.Stop()
	select {
	case p := <-acked:
		writeAck(w, p)
	case <-t.C:
		h.c.httpAcks.Delete(id)
		h.c.log.Warn("no ack in time for a Slack request; answered empty", "type", evt.Request.Type)
		writeAck(w, nil)
	case <-r.Context().Done():
		h.c.httpAcks.Delete(id)
	}
}

// ackHTTP takes the ack of an envelope that came over HTTP to its waiting
// request, and reports whether it did (false: a Socket Mode envelope).
func (c *Client) ackHTTP(id string, start time.Time, payload any) bool {
	if !strings.HasPrefix(id, httpEnvelope) {
		return false
	}
	if ch, ok := c.httpAcks.LoadAndDelete(id); ok {
		ch.(chan any) <- payload
	}
	c.acksMu.Lock()
	c.acks = append(c.acks, time.Since(start))
	c.acksMu.Unlock()
	return true
}

// writeAck answers a request: 200 with the ack's payload as JSON, or empty.
func writeAck(w http.ResponseWriter, payload any) {
	if payload == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw)
}

// envelope reads a verified request as the Socket Mode envelope it stands
// for. Without an envelope, answer is the whole response (url_verification,
// a retried event, ssl_check).
func (h *HTTPEndpoint) envelope(hd http.Header, body []byte) (evt *socketmode.Event, answer any, err error) {
	ct, _, _ := mime.ParseMediaType(hd.Get("Content-Type"))
	switch ct {
	case "application/json":
		return h.eventsAPI(hd, body)
	case formType:
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, nil, err
		}
		switch {
		case form.Has("payload"):
			var cb slack.InteractionCallback
			if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
				return nil, nil, err
			}
			return newEnvelope(socketmode.EventTypeInteractive, socketmode.RequestTypeInteractive, cb, body), nil, nil
		case form.Has("command"):
			return newEnvelope(socketmode.EventTypeSlashCommand, socketmode.RequestTypeSlashCommands, slashCommand(form), body), nil, nil
		case form.Get("ssl_check") == "1":
			return nil, nil, nil
		}
		return nil, nil, errors.New("a form with neither payload nor command")
	}
	return nil, nil, errors.New("unexpected content type " + strconv.Quote(ct))
}

// eventsAPI reads an Events API post: the url_verification handshake, or
// an event, which a retry (X-Slack-Retry-Num) or any repeat of its
// event_id does not deliver twice.
func (h *HTTPEndpoint) eventsAPI(hd http.Header, body []byte) (*socketmode.Event, any, error) {
	var outer struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
		EventID   string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &outer); err != nil {
		return nil, nil, err
	}
	switch outer.Type {
	case slackevents.URLVerification:
		return nil, map[string]string{"challenge": outer.Challenge}, nil
	case slackevents.CallbackEvent:
	default:
		return nil, nil, nil // app_rate_limited and the like: nothing to do
	}
	ev, err := slackevents.ParseEvent(body, slackevents.OptionNoVerifyToken())
	if err != nil {
		return nil, nil, err
	}
	retry, _ := strconv.Atoi(hd.Get("X-Slack-Retry-Num"))
	if outer.EventID != "" && !h.events.add(outer.EventID) {
		h.c.log.Info("Slack redelivered an event already handled", "event_id", outer.EventID, "retry", retry,
			"reason", hd.Get("X-Slack-Retry-Reason"))
		return nil, nil, nil
	}
	evt := newEnvelope(socketmode.EventTypeEventsAPI, socketmode.RequestTypeEventsAPI, ev, body)
	evt.Request.RetryAttempt, evt.Request.RetryReason = retry, hd.Get("X-Slack-Retry-Reason")
	return evt, nil, nil
}

func newEnvelope(et socketmode.EventType, rt string, data any, body []byte) *socketmode.Event {
	return &socketmode.Event{Type: et, Data: data, Request: &socketmode.Request{Type: rt, Payload: body}}
}

// slashCommand reads a slash command's form as slack-go does.
func slashCommand(f url.Values) slack.SlashCommand {
	return slack.SlashCommand{
		Token: f.Get("token"), TeamID: f.Get("team_id"), TeamDomain: f.Get("team_domain"),
		EnterpriseID: f.Get("enterprise_id"), EnterpriseName: f.Get("enterprise_name"),
		IsEnterpriseInstall: f.Get("is_enterprise_install") == "true",
		ChannelID:           f.Get("channel_id"), ChannelName: f.Get("channel_name"),
		UserID: f.Get("user_id"), UserName: f.Get("user_name"),
		Command: f.Get("command"), Text: f.Get("text"),
		ResponseURL: f.Get("response_url"), TriggerID: f.Get("trigger_id"), APIAppID: f.Get("api_app_id"),
	}
}

// recent is a bounded set of keys seen within ttl.
type recent struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	seen  map[string]time.Time
	order []string
}

// add records key and reports whether it is new.
func (s *recent) add(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	for len(s.order) > 0 && (len(s.order) >= s.max || now.Sub(s.seen[s.order[0]]) > s.ttl) {
		delete(s.seen, s.order[0])
		s.order = s.order[1:]
	}
	if _, ok := s.seen[key]; ok {
		return false
	}
	s.seen[key] = now
	s.order = append(s.order, key)
	return true
}
