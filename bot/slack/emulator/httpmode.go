package emulator

// HTTP mode: an app with Socket Mode off gives Slack a request URL, and
// Slack posts to it what it would otherwise send as envelopes: Events API
// callbacks as JSON, slash commands as a form, interactions as a form with
// one field, payload=<json>, each signed with the app's signing secret
// (X-Slack-Signature, X-Slack-Request-Timestamp). A 200 within 3 s is the
// ack; its body is what a Socket Mode ack's payload would be (a slash
// command's answer, a form's field errors).
//
// HTTPMode does this for the emulator without changing how it sends: it
// takes the app's place on the emulator's own Socket Mode link, posts each
// envelope to the request URL as Slack would, and acks the envelope with
// the response when the app answers 2xx. So everything the emulator does
// for envelopes holds over HTTP too: events not acked in time are
// redelivered (as posts with X-Slack-Retry-Num and X-Slack-Retry-Reason),
// an answer in the response is shown like an ack payload, and Acks()
// measures each round trip.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// HTTPRequest is one request as Slack posts it to an app's request URL.
type HTTPRequest struct {
	// Kind is the envelope type it carries: "events_api",
	// "slash_commands", "interactive", or "url_verification".
	Kind        string
	ContentType string
	Body        []byte
	// Timestamp is signed as X-Slack-Request-Timestamp; zero: the
	// emulator's now (Options.Now) when it is sent.
	Timestamp time.Time
	// RetryNum and RetryReason are X-Slack-Retry-Num and
	// X-Slack-Retry-Reason (events redelivered after no ack).
	RetryNum    int
	RetryReason string
	// Unsigned sends it without X-Slack-Signature and
	// X-Slack-Request-Timestamp; Secret, when set, signs it with another
	// secret than the app's (a forger's). For tests of the app's checks.
	Unsigned bool
	Secret   string
	// Signature, when set, is sent as X-Slack-Signature as it is (with
	// Timestamp as given): a captured request sent again.
	Signature string
}

// HTTPDelivery is a request HTTPMode sent and what the app answered.
type HTTPDelivery struct {
	Request HTTPRequest
	// SentTimestamp and SentSignature are the headers it went with.
	SentTimestamp string
	SentSignature string
	Status        int    // 0 when no answer came
	Response      []byte // the answer's body
	Err           error  // the transport's error, if any
	Latency       time.Duration
}

// HTTPMode posts the emulator's envelopes to an app's request URL.
type HTTPMode struct {
	s      *Server
	url    string
	secret string
	client *http.Client

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	ws         *websocket.Conn
	deliveries []HTTPDelivery
}

// DeliverHTTP makes the emulator post envelopes to requestURL (the app's
// POST /slack/events) signed with signingSecret, instead of leaving them
// for a Socket Mode client; Start must have been called. Close stops it.
func (s *Server) DeliverHTTP(requestURL, signingSecret string) (*HTTPMode, error) {
	if s.URL() == "" {
		return nil, errors.New("slackemu: DeliverHTTP before Start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &HTTPMode{s: s, url: requestURL, secret: signingSecret, cancel: cancel,
		client: &http.Client{Timeout: 10 * time.Second}}
	ws, err := h.dial(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	h.wg.Go(func() { h.relay(ctx, ws) })
	return h, nil
}

// Close stops delivering and waits for requests in flight.
func (h *HTTPMode) Close() {
	h.cancel()
	h.mu.Lock()
	if h.ws != nil {
		_ = h.ws.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// dial opens the emulator's Socket Mode link, as apps.connections.open
// would hand it out.
func (h *HTTPMode) dial(ctx context.Context) (*websocket.Conn, error) {
	h.s.mu.Lock()
	if h.s.closed {
		h.s.mu.Unlock()
		return nil, errors.New("slackemu: closed")
	}
	u := h.s.openTicketLocked()
	h.s.mu.Unlock()
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("slackemu: HTTP mode link: %w", err)
	}
	h.mu.Lock()
	h.ws = ws
	h.mu.Unlock()
	return ws, nil
}

// relay reads envelopes and posts each in its own goroutine; it opens a
// new link when the emulator drops or refreshes the old one.
func (h *HTTPMode) relay(ctx context.Context, ws *websocket.Conn) {
	for ctx.Err() == nil {
		var f struct {
			Type         string          `json:"type"`
			EnvelopeID   string          `json:"envelope_id"`
			Payload      json.RawMessage `json:"payload"`
			RetryAttempt int             `json:"retry_attempt"`
			RetryReason  string          `json:"retry_reason"`
		}
		_, data, err := ws.ReadMessage()
		if err == nil && json.Unmarshal(data, &f) == nil && f.EnvelopeID != "" {
			h.wg.Go(func() { h.forward(ctx, ws, f.EnvelopeID, f.Type, f.Payload, f.RetryAttempt, f.RetryReason) })
			continue
		}
		if err == nil && f.Type != "disconnect" {
			continue // hello
		}
		_ = ws.Close()
		if ctx.Err() != nil {
			return
		}
		if ws, err = h.dial(ctx); err != nil {
			return // the emulator is closed
		}
	}
}

// forward posts one envelope and acks it with the answer when it is 2xx.
func (h *HTTPMode) forward(ctx context.Context, ws *websocket.Conn, id, typ string, payload json.RawMessage, attempt int, reason string) {
	req, err := envelopeRequest(typ, payload)
	if err != nil {
		h.s.logf("HTTP mode: %v", err)
		return
	}
	if attempt > 0 {
		req.RetryNum, req.RetryReason = attempt, "http_timeout"
		if reason != "timeout" {
			req.RetryReason = "unknown_error"
		}
	}
	d := h.Send(ctx, req)
	if d.Status < 200 || d.Status > 299 {
		return // Slack retries events; a person sees an error for the rest
	}
	ack := map[string]any{"envelope_id": id}
	if p := ackPayload(typ, d.Response); p != nil {
		ack["payload"] = p
	}
	b, _ := json.Marshal(ack)
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = ws.WriteMessage(websocket.TextMessage, b)
}

// ackPayload is an answer's body as a Socket Mode ack payload: JSON as it
// is, plain text (which Slack shows as an ephemeral message) as text.
func ackPayload(typ string, body []byte) json.RawMessage {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || typ == "events_api" {
		return nil
	}
	if json.Valid(body) && body[0] == '{' {
		return body
	}
	b, _ := json.Marshal(map[string]string{"text": string(body)})
	return b
}

// envelopeRequest is the request Slack posts for an envelope.
func envelopeRequest(typ string, payload json.RawMessage) (HTTPRequest, error) {
	switch typ {
	case "events_api":
		return HTTPRequest{Kind: typ, ContentType: "application/json", Body: payload}, nil
	case "slash_commands":
		var fields map[string]any
		if err := json.Unmarshal(payload, &fields); err != nil {
			return HTTPRequest{}, err
		}
		form := url.Values{}
		for k, v := range fields {
			form.Set(k, fmt.Sprint(v))
		}
		return HTTPRequest{Kind: typ, ContentType: "application/x-www-form-urlencoded", Body: []byte(form.Encode())}, nil
	case "interactive":
		form := url.Values{"payload": {string(payload)}}
		return HTTPRequest{Kind: typ, ContentType: "application/x-www-form-urlencoded", Body: []byte(form.Encode())}, nil
	}
	return HTTPRequest{}, fmt.Errorf("no HTTP form for %q envelopes", typ)
}

// VerifyURL sends the url_verification handshake Slack sends when a
// request URL is entered, and reports whether the app echoed the
// challenge.
func (h *HTTPMode) VerifyURL(ctx context.Context) error {
	challenge := randHex(32)
	body, _ := json.Marshal(map[string]string{"token": verificationToken, "challenge": challenge, "type": "url_verification"})
	d := h.Send(ctx, HTTPRequest{Kind: "url_verification", ContentType: "application/json", Body: body})
	if d.Err != nil {
		return d.Err
	}
	if d.Status != http.StatusOK {
		return fmt.Errorf("slackemu: url_verification answered %d", d.Status)
	}
	var got struct {
		Challenge string `json:"challenge"`
	}
	if string(bytes.TrimSpace(d.Response)) == challenge || (json.Unmarshal(d.Response, &got) == nil && got.Challenge == challenge) {
		return nil
	}
	return fmt.Errorf("slackemu: url_verification answer %q does not echo the challenge", d.Response)
}

// Send posts r to the request URL, signed as r says, and records it.
func (h *HTTPMode) Send(ctx context.Context, r HTTPRequest) HTTPDelivery {
	d := HTTPDelivery{Request: r}
	if r.Timestamp.IsZero() {
		r.Timestamp = h.s.now()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(r.Body))
	if err != nil {
		d.Err = err
		return h.record(d)
	}
	req.Header.Set("Content-Type", r.ContentType)
	req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	if !r.Unsigned {
		secret := h.secret
		if r.Secret != "" {
			secret = r.Secret
		}
		d.SentTimestamp = strconv.FormatInt(r.Timestamp.Unix(), 10)
		d.SentSignature = r.Signature
		if d.SentSignature == "" {
			d.SentSignature = Sign(secret, d.SentTimestamp, r.Body)
		}
		req.Header.Set("X-Slack-Request-Timestamp", d.SentTimestamp)
		req.Header.Set("X-Slack-Signature", d.SentSignature)
	}
	if r.RetryNum > 0 {
		req.Header.Set("X-Slack-Retry-Num", strconv.Itoa(r.RetryNum))
		req.Header.Set("X-Slack-Retry-Reason", r.RetryReason)
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	d.Latency = time.Since(start)
	if err != nil {
		d.Err = err
		return h.record(d)
	}
	defer resp.Body.Close()
	d.Status = resp.StatusCode
	d.Response, d.Err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return h.record(d)
}

func (h *HTTPMode) record(d HTTPDelivery) HTTPDelivery {
	h.mu.Lock()
	h.deliveries = append(h.deliveries, d)
	h.mu.Unlock()
	h.s.logf("HTTP mode: %s → %d (%v)", d.Request.Kind, d.Status, d.Latency)
	h.s.mu.Lock()
	h.s.notifyLocked()
	h.s.mu.Unlock()
	return d
}

// Deliveries returns every request sent, in the order answers came.
func (h *HTTPMode) Deliveries() []HTTPDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]HTTPDelivery(nil), h.deliveries...)
}

// Sign is Slack's v0 request signature over body sent at timestamp ts
// (unix seconds): "v0=" + hex(HMAC-SHA256(secret, "v0:"+ts+":"+body)).
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}
