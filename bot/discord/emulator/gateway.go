package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Gateway close codes the emulator sends.
const (
	CloseUnknownError         = 4000
	CloseUnknownOpcode        = 4001
	CloseDecodeError          = 4002
	CloseNotAuthenticated     = 4003
	CloseAuthenticationFailed = 4004
	CloseAlreadyAuthenticated = 4005
	CloseInvalidSeq           = 4007
	CloseRateLimited          = 4008
	CloseSessionTimedOut      = 4009
	CloseInvalidShard         = 4010
	CloseInvalidAPIVersion    = 4012
	CloseInvalidIntents       = 4013
	CloseDisallowedIntents    = 4014
)

// replayLimit is how many dispatches a session keeps for RESUME.
const replayLimit = 5000

// Identify is one IDENTIFY the emulator accepted or refused.
type Identify struct {
	Intents    int
	OS         string // properties.os (or the legacy "$os")
	Browser    string // properties.browser (or "$browser")
	Compress   bool
	Shard      [2]int
	SessionID  string // "" when refused
	CloseCode  int    // the close code when refused
	ReceivedAt time.Time
}

type frame struct {
	seq           int64
	data          []byte
	interactionID string
}

type session struct {
	id      string
	intents int
	seq     int64
	buffer  []frame
	conn    *gwConn
}

// outItem is a frame waiting for a connection's writer, or a close.
type outItem struct {
	data          []byte
	interactionID string
	closeCode     int // > 0: send a close frame and end the connection
}

type gwConn struct {
	ws    *websocket.Conn
	sess  *session
	queue []outItem // guarded by Server.mu
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
	sends []time.Time // commands in the last 60 s (heartbeats excluded)
}

func (c *gwConn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// kill drops the TCP connection without a close frame.
func (c *gwConn) kill() { c.once.Do(func() { _ = c.ws.Close() }) }

type gatewayState struct {
	sessions   map[string]*session
	conns      map[*gwConn]bool
	identifies []Identify
	dials      int
	resumes    int
	replayed   int
	heartbeats int
	noAcks     bool
	stopped    bool
	hold       bool      // new connections wait for their HELLO
	held       []*gwConn // connections waiting for HoldConnections(false)
}

func (g *gatewayState) init() {
	g.sessions = map[string]*session{}
	g.conns = map[*gwConn]bool{}
}

// stopLocked refuses new connections and returns the open ones.
func (g *gatewayState) stopLocked() []*gwConn {
	g.stopped = true
	var out []*gwConn
	for c := range g.conns {
		out = append(out, c)
	}
	return out
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// handleGateway serves the Gateway WebSocket.
func (s *Server) handleGateway(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gwConn{ws: ws, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	if s.gw.stopped {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.gw.conns[c] = true
	s.gw.dials++
	s.notifyLocked()
	q := r.URL.Query()
	switch {
	case q.Get("v") != "" && q.Get("v") != "9" && q.Get("v") != "10":
		s.closeConnLocked(c, CloseInvalidAPIVersion)
	case q.Get("encoding") != "" && q.Get("encoding") != "json":
		s.closeConnLocked(c, CloseDecodeError)
	case s.gw.hold:
		s.gw.held = append(s.gw.held, c)
	default:
		s.helloLocked(c)
	}
	s.mu.Unlock()
	s.logf("gateway: connection from %s", r.RemoteAddr)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.writeLoop(c)
	}()
	s.readLoop(c)

	s.mu.Lock()
	if c.sess != nil && c.sess.conn == c {
		c.sess.conn = nil
	}
	delete(s.gw.conns, c)
	s.notifyLocked()
	s.mu.Unlock()
	close(c.done)
	wg.Wait()
	c.kill()
	s.logf("gateway: connection closed")
}

// helloLocked sends HELLO (op 10), the first frame of every connection.
func (s *Server) helloLocked(c *gwConn) {
	s.sendLocked(c, outItem{data: mustJSON(obj{"op": 10, "d": obj{"heartbeat_interval": s.opts.HeartbeatInterval.Milliseconds()}, "s": nil, "t": nil})})
}

// sendLocked queues an item for c's writer. Caller holds s.mu.
func (s *Server) sendLocked(c *gwConn, it outItem) {
	c.queue = append(c.queue, it)
	c.kick()
}

func (s *Server) closeConnLocked(c *gwConn, code int) {
	s.logf("gateway: closing with %d", code)
	s.sendLocked(c, outItem{closeCode: code})
}

// writeLoop is the only writer of c.ws. When the connection ends it
// flushes what is queued (a final close frame, typically) and returns.
func (s *Server) writeLoop(c *gwConn) {
	for {
		final := false
		select {
		case <-c.wake:
		case <-c.done:
			final = true
		}
		s.mu.Lock()
		items := c.queue
		c.queue = nil
		s.mu.Unlock()
		for _, it := range items {
			_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if it.closeCode > 0 {
				_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(it.closeCode, closeReason(it.closeCode)))
				c.kill()
				return
			}
			sent := time.Now()
			if err := c.ws.WriteMessage(websocket.TextMessage, it.data); err != nil {
				c.kill()
				return
			}
			if it.interactionID != "" {
				s.markDispatched(it.interactionID, sent)
			}
		}
		if final {
			return
		}
	}
}

func closeReason(code int) string {
	return map[int]string{
		CloseUnknownError: "Unknown error.", CloseUnknownOpcode: "Unknown opcode.",
		CloseDecodeError: "Decode error.", CloseNotAuthenticated: "Not authenticated.",
		CloseAuthenticationFailed: "Authentication failed.", CloseAlreadyAuthenticated: "Already authenticated.",
		CloseInvalidSeq: "Invalid seq.", CloseRateLimited: "Rate limited.", CloseSessionTimedOut: "Session timed out.",
		CloseInvalidShard: "Invalid shard.", CloseInvalidAPIVersion: "Invalid API version.",
		CloseInvalidIntents: "Invalid intent(s).", CloseDisallowedIntents: "Disallowed intent(s).",
	}[code]
}

type gwPayload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
}

// readLoop reads client frames until the connection ends.
func (s *Server) readLoop(c *gwConn) {
	timeout := 2*s.opts.HeartbeatInterval + time.Second
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.mu.Lock()
				s.closeConnLocked(c, CloseSessionTimedOut)
				s.mu.Unlock()
			}
			return
		}
		s.mu.Lock()
		s.handleFrameLocked(c, mt, data)
		s.mu.Unlock()
	}
}

// handleFrameLocked handles one client frame. Caller holds s.mu.
func (s *Server) handleFrameLocked(c *gwConn, mt int, data []byte) {
	if mt != websocket.TextMessage || len(data) > 4096 {
		s.closeConnLocked(c, CloseDecodeError)
		return
	}
	var p gwPayload
	if err := json.Unmarshal(data, &p); err != nil {
		s.closeConnLocked(c, CloseDecodeError)
		return
	}
	if p.Op != 1 {
		now := time.Now()
		keep := c.sends[:0]
		for _, t := range c.sends {
			if now.Sub(t) < time.Minute {
				keep = append(keep, t)
			}
		}
		c.sends = append(keep, now)
		if len(c.sends) > 120 {
			s.closeConnLocked(c, CloseRateLimited)
			return
		}
	}
	switch p.Op {
	case 1:
		s.gw.heartbeats++
		if !s.gw.noAcks {
			s.sendLocked(c, outItem{data: []byte(`{"op":11,"d":null,"s":null,"t":null}`)})
		}
		s.notifyLocked()
	case 2:
		s.identifyLocked(c, p.D)
	case 6:
		s.resumeLocked(c, p.D)
	case 3, 4, 8:
		if c.sess == nil {
			s.closeConnLocked(c, CloseNotAuthenticated)
		}
	default:
		s.closeConnLocked(c, CloseUnknownOpcode)
	}
}

type identifyData struct {
	Token      string          `json:"token"`
	Intents    *int            `json:"intents"`
	Compress   bool            `json:"compress"`
	Shard      *[2]int         `json:"shard"`
	Properties json.RawMessage `json:"properties"`
}

func (s *Server) tokenOK(tok string) bool { return strings.TrimPrefix(tok, "Bot ") == s.opts.Token }

func (s *Server) identifyLocked(c *gwConn, raw json.RawMessage) {
	if c.sess != nil {
		s.closeConnLocked(c, CloseAlreadyAuthenticated)
		return
	}
	var d identifyData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConnLocked(c, CloseDecodeError)
		return
	}
	var props map[string]string
	_ = json.Unmarshal(d.Properties, &props)
	prop := func(k string) string {
		if v := props[k]; v != "" {
			return v
		}
		return props["$"+k]
	}
	rec := Identify{OS: prop("os"), Browser: prop("browser"), Compress: d.Compress, Shard: [2]int{0, 1}, ReceivedAt: time.Now()}
	if d.Intents != nil {
		rec.Intents = *d.Intents
	}
	if d.Shard != nil {
		rec.Shard = *d.Shard
	}
	switch {
	case !s.tokenOK(d.Token):
		rec.CloseCode = CloseAuthenticationFailed
	case d.Intents == nil || rec.Intents&^allIntents != 0 || rec.Intents < 0:
		rec.CloseCode = CloseInvalidIntents
	case rec.Intents&s.opts.DeniedIntents&privilegedIntents != 0:
		rec.CloseCode = CloseDisallowedIntents
	case rec.Shard[1] < 1 || rec.Shard[0] < 0 || rec.Shard[0] >= rec.Shard[1]:
		rec.CloseCode = CloseInvalidShard
	}
	if rec.CloseCode != 0 {
		s.gw.identifies = append(s.gw.identifies, rec)
		s.notifyLocked()
		s.closeConnLocked(c, rec.CloseCode)
		return
	}
	// A new session supersedes sessions whose connection is gone.
	for id, old := range s.gw.sessions {
		if old.conn == nil {
			delete(s.gw.sessions, id)
		}
	}
	sess := &session{id: randHex(32), intents: rec.Intents, conn: c}
	s.gw.sessions[sess.id] = sess
	c.sess = sess
	rec.SessionID = sess.id
	s.gw.identifies = append(s.gw.identifies, rec)
	guilds := []obj{}
	for _, id := range s.guildOrder {
		guilds = append(guilds, obj{"id": id, "unavailable": true})
	}
	s.sessionDispatchLocked(sess, "READY", obj{
		"v": 10, "session_id": sess.id, "session_type": "normal",
		"resume_gateway_url": s.gatewayURLLocked(), "user": s.wireUserLocked(s.opts.ApplicationID),
		"guilds": guilds, "private_channels": []obj{}, "presences": []obj{}, "relationships": []obj{},
		"guild_join_requests": []obj{}, "geo_ordered_rtc_regions": []string{"us-east"},
		"application": obj{"id": s.opts.ApplicationID, "flags": 0}, "shard": rec.Shard,
		"user_settings": obj{}, "auth_session_id_hash": randHex(16),
	}, "")
	if sess.intents&IntentGuilds != 0 {
		for _, id := range s.guildOrder {
			s.sessionDispatchLocked(sess, "GUILD_CREATE", s.wireGuildCreateLocked(s.guilds[id]), "")
		}
	}
	s.logf("gateway: IDENTIFY intents=%d session=%s", rec.Intents, sess.id)
	s.notifyLocked()
}

func (s *Server) gatewayURLLocked() string {
	return strings.TrimSuffix("ws"+strings.TrimPrefix(s.url, "http"), "/")
}

type resumeData struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

func (s *Server) resumeLocked(c *gwConn, raw json.RawMessage) {
	if c.sess != nil {
		s.closeConnLocked(c, CloseAlreadyAuthenticated)
		return
	}
	var d resumeData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConnLocked(c, CloseDecodeError)
		return
	}
	if !s.tokenOK(d.Token) {
		s.closeConnLocked(c, CloseAuthenticationFailed)
		return
	}
	sess := s.gw.sessions[d.SessionID]
	if sess == nil || len(sess.buffer) > 0 && sess.buffer[0].seq > d.Seq+1 {
		s.logf("gateway: RESUME of unknown session %q", d.SessionID)
		s.sendLocked(c, outItem{data: []byte(`{"op":9,"d":false,"s":null,"t":null}`)})
		return
	}
	if d.Seq > sess.seq {
		s.closeConnLocked(c, CloseInvalidSeq)
		return
	}
	if old := sess.conn; old != nil && old != c {
		s.closeConnLocked(old, CloseSessionTimedOut)
		old.sess = nil
	}
	sess.conn, c.sess = c, sess
	replayed := 0
	for _, f := range sess.buffer {
		if f.seq > d.Seq {
			s.sendLocked(c, outItem{data: f.data, interactionID: f.interactionID})
			replayed++
		}
	}
	s.sessionDispatchLocked(sess, "RESUMED", obj{}, "")
	s.gw.resumes++
	s.gw.replayed += replayed
	s.logf("gateway: RESUME session=%s from seq %d, %d replayed", sess.id, d.Seq, replayed)
	s.notifyLocked()
}

// sessionDispatchLocked sends one dispatch to one session (buffered for
// RESUME; written at once when connected). Caller holds s.mu.
func (s *Server) sessionDispatchLocked(sess *session, t string, d any, interactionID string) {
	sess.seq++
	f := frame{seq: sess.seq, interactionID: interactionID,
		data: mustJSON(obj{"op": 0, "s": sess.seq, "t": t, "d": d})}
	sess.buffer = append(sess.buffer, f)
	if len(sess.buffer) > replayLimit {
		sess.buffer = append([]frame(nil), sess.buffer[len(sess.buffer)-replayLimit:]...)
	}
	if sess.conn != nil {
		s.sendLocked(sess.conn, outItem{data: f.data, interactionID: interactionID})
	}
}

// dispatchLocked sends event t to every session subscribed to intent (0:
// always sent). build renders the payload with or without message content
// (the MESSAGE_CONTENT intent). Caller holds s.mu.
func (s *Server) dispatchLocked(t string, intent int, build func(contentIntent bool) any) {
	s.dispatchInteractionLocked(t, intent, build, "")
}

func (s *Server) dispatchInteractionLocked(t string, intent int, build func(contentIntent bool) any, interactionID string) {
	var cache [2]any
	for _, sess := range s.gw.sessions {
		if intent != 0 && sess.intents&intent == 0 {
			continue
		}
		ci := sess.intents&IntentMessageContent != 0
		k := 0
		if ci {
			k = 1
		}
		if cache[k] == nil {
			cache[k] = build(ci)
		}
		s.sessionDispatchLocked(sess, t, cache[k], interactionID)
	}
}
