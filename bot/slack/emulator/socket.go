package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Ack is one envelope acknowledgement received from the app.
type Ack struct {
	EnvelopeID string
	Type       string // envelope type: events_api, slash_commands, interactive
	Attempt    int    // retry_attempt of the delivery that was acked
	// Latency is measured over the wire: from the moment the emulator wrote
	// the (latest) delivery of the envelope to the socket to the moment it
	// read the ack frame, before any of its own bookkeeping.
	Latency    time.Duration
	SentAt     time.Time       // when the acked delivery was written to the socket
	ReceivedAt time.Time       // when the ack frame was read from the socket
	Payload    json.RawMessage // the ack's payload, nil when absent
}

// ProtocolError is a frame the app sent over Socket Mode that Slack's
// protocol has no place for: an ack without an envelope_id (the hello
// message has none and must not be acked), an ack for an envelope_id the
// emulator never sent, or a frame that is not an ack at all. Real Slack
// ignores such frames; the emulator records them so tests can fail on them.
type ProtocolError struct {
	Reason string    // what is wrong, for a test failure message
	Frame  string    // the frame as received (truncated to 500 bytes)
	At     time.Time // when it was read
}

func (p ProtocolError) String() string { return p.Reason + ": " + p.Frame }

type envelope struct {
	id      string
	typ     string
	payload json.RawMessage
	accepts bool
	attempt int
	reason  string
	sentAt  time.Time // when the latest delivery was written to a socket
	timer   *time.Timer
	onAck   func(json.RawMessage) // runs without s.mu held
}

func (e *envelope) frame() []byte {
	f := map[string]any{
		"envelope_id":              e.id,
		"type":                     e.typ,
		"payload":                  e.payload,
		"accepts_response_payload": e.accepts,
	}
	if e.typ == "events_api" || e.attempt > 0 {
		f["retry_attempt"] = e.attempt
		f["retry_reason"] = e.reason
	}
	b, _ := json.Marshal(f)
	return b
}

// outFrame is one text frame waiting for a connection's writer; env is
// set for envelopes, so the writer can stamp when it went on the wire.
type outFrame struct {
	b   []byte
	env *envelope
}

type wsConn struct {
	ws   *websocket.Conn
	send chan outFrame
	done chan struct{}
	once sync.Once
}

func (c *wsConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
		_ = c.ws.Close()
	})
}

type socketState struct {
	conns    []*wsConn // connections that receive envelopes
	all      map[*wsConn]bool
	rr       int
	tickets  map[string]bool
	outbox   []*envelope // waiting for a connection
	pending  map[string]*envelope
	sent     map[string]bool // every envelope_id ever delivered
	acks     []Ack
	errors   []ProtocolError
	timeouts int
	connects int
	pongs    int
	refusing bool // apps.connections.open fails (Slack's side is down)
}

func (st *socketState) init() {
	st.all = map[*wsConn]bool{}
	st.tickets = map[string]bool{}
	st.pending = map[string]*envelope{}
	st.sent = map[string]bool{}
}

// stopLocked stops all timers and returns every connection to close.
func (st *socketState) stopLocked() []*wsConn {
	for _, e := range st.pending {
		e.timer.Stop()
	}
	st.pending = map[string]*envelope{}
	var out []*wsConn
	for c := range st.all {
		out = append(out, c)
	}
	st.conns = nil
	return out
}

var upgrader = websocket.Upgrader{
	CheckOrigin: func(*http.Request) bool { return true }, // socketmode sends Origin: https://api.slack.com
}

// openTicketLocked mints a one-shot WebSocket URL for apps.connections.open.
func (s *Server) openTicketLocked() string {
	ticket := newUUID()
	s.sock.tickets[ticket] = true
	return "ws" + strings.TrimPrefix(s.url, "http") + "link/?ticket=" + ticket + "&app_id=" + s.opts.AppID
}

func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := s.sock.tickets[ticket] && !s.closed
	delete(s.sock.tickets, ticket)
	s.mu.Unlock()
	if !ok {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{ws: ws, send: make(chan outFrame, 1024), done: make(chan struct{})}
	ws.SetPongHandler(func(string) error {
		s.mu.Lock()
		s.sock.pongs++
		s.notifyLocked()
		s.mu.Unlock()
		return nil
	})

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.close()
		return
	}
	s.sock.all[c] = true
	s.sock.conns = append(s.sock.conns, c)
	s.sock.connects++
	hello, _ := json.Marshal(map[string]any{
		"type":            "hello",
		"num_connections": len(s.sock.conns),
		"connection_info": map[string]any{"app_id": s.opts.AppID},
		"debug_info": map[string]any{
			"host":                        "applink-slackemu-" + strconv.Itoa(s.sock.connects),
			"started":                     s.now().UTC().Format("2006-01-02 15:04:05.000"),
			"build_number":                1,
			"approximate_connection_time": 18060,
		},
	})
	c.send <- outFrame{b: hello}
	queued := s.sock.outbox
	s.sock.outbox = nil
	for _, e := range queued {
		s.sendLocked(e)
	}
	s.logf("socket connected (%d open)", len(s.sock.conns))
	s.notifyLocked()
	s.mu.Unlock()

	// The reader only reads and stamps frames; another goroutine handles
	// them, so an ack's handling (locks, ack-payload replies) never delays
	// reading, and so the stamping, of the next one.
	var wg sync.WaitGroup
	in := make(chan inFrame, 1024)
	wg.Go(func() { s.writeLoop(c) })
	wg.Go(func() {
		for f := range in {
			s.handleFrame(f)
		}
	})
	s.readLoop(c, in)
	close(in)
	c.close()
	wg.Wait()

	s.mu.Lock()
	s.removeConnLocked(c)
	delete(s.sock.all, c)
	s.logf("socket closed (%d open)", len(s.sock.conns))
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) removeConnLocked(c *wsConn) {
	for i, x := range s.sock.conns {
		if x == c {
			s.sock.conns = append(s.sock.conns[:i:i], s.sock.conns[i+1:]...)
			return
		}
	}
}

func (s *Server) writeLoop(c *wsConn) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	n := 0
	ping := func() bool {
		n++
		return c.ws.WriteControl(websocket.PingMessage, []byte("ping-"+strconv.Itoa(n)), time.Now().Add(5*time.Second)) == nil
	}
	if !ping() {
		c.close()
		return
	}
	for {
		select {
		case <-c.done:
			return
		case f := <-c.send:
			if f.env != nil {
				s.mu.Lock()
				f.env.sentAt = time.Now()
				s.mu.Unlock()
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, f.b); err != nil {
				c.close()
				return
			}
		case <-t.C:
			if !ping() {
				c.close()
				return
			}
		}
	}
}

// inFrame is a frame read from an app, stamped when it was read.
type inFrame struct {
	data []byte
	at   time.Time
}

// readLoop reads frames until the socket fails, stamping each as it
// arrives, before any bookkeeping: ack latency is measured over the wire.
func (s *Server) readLoop(c *wsConn, out chan<- inFrame) {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		out <- inFrame{data: data, at: time.Now()}
	}
}

// handleFrame handles one frame from an app: an ack, or a protocol error.
func (s *Server) handleFrame(f inFrame) {
	var ack struct {
		EnvelopeID *string         `json:"envelope_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	switch {
	case json.Unmarshal(f.data, &ack) != nil:
		s.protocolError(f.at, f.data, "frame is not a JSON object")
	case ack.EnvelopeID == nil:
		s.protocolError(f.at, f.data, "frame without envelope_id: apps may only send acks")
	case *ack.EnvelopeID == "":
		s.protocolError(f.at, f.data, "ack without envelope_id (the hello message has none and must not be acked)")
	default:
		s.handleAck(*ack.EnvelopeID, ack.Payload, f.at, f.data)
	}
}

// protocolError records a frame the protocol has no place for.
func (s *Server) protocolError(at time.Time, frame []byte, reason string) {
	f := string(frame)
	if len(f) > 500 {
		f = f[:500] + "…"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sock.errors = append(s.sock.errors, ProtocolError{Reason: reason, Frame: f, At: at})
	s.logf("protocol error: %s: %s", reason, f)
	s.notifyLocked()
}

func (s *Server) handleAck(id string, payload json.RawMessage, at time.Time, frame []byte) {
	if string(payload) == "null" {
		payload = nil
	}
	s.mu.Lock()
	e := s.sock.pending[id]
	if e == nil {
		known := s.sock.sent[id]
		s.mu.Unlock()
		if !known {
			s.protocolError(at, frame, "ack for envelope_id "+strconv.Quote(id)+", which was never sent")
			return
		}
		s.logf("ack for already acked or timed-out envelope %s", id)
		return
	}
	e.timer.Stop()
	delete(s.sock.pending, id)
	s.sock.acks = append(s.sock.acks, Ack{
		EnvelopeID: id, Type: e.typ, Attempt: e.attempt,
		Latency: at.Sub(e.sentAt), SentAt: e.sentAt, ReceivedAt: at, Payload: payload,
	})
	s.notifyLocked()
	cb := e.onAck
	s.mu.Unlock()
	if cb != nil {
		cb(payload)
	}
}

// enqueueLocked creates an envelope and delivers (or queues) it. It returns
// the envelope_id. Caller holds s.mu.
func (s *Server) enqueueLocked(typ string, payload any, accepts bool, onAck func(json.RawMessage)) string {
	b, err := json.Marshal(payload)
	if err != nil {
		panic("slackemu: marshal payload: " + err.Error())
	}
	e := &envelope{id: newUUID(), typ: typ, payload: b, accepts: accepts, onAck: onAck}
	s.sendLocked(e)
	return e.id
}

// sendLocked writes e to one open connection (round robin) and arms its ack
// timer, or queues it until a client connects. Caller holds s.mu.
func (s *Server) sendLocked(e *envelope) {
	if s.closed {
		return
	}
	for len(s.sock.conns) > 0 {
		c := s.sock.conns[s.sock.rr%len(s.sock.conns)]
		s.sock.rr++
		select {
		case c.send <- outFrame{b: e.frame(), env: e}:
		default: // a client that does not read: drop it
			s.removeConnLocked(c)
			go c.close()
			continue
		}
		s.sock.pending[e.id] = e
		s.sock.sent[e.id] = true
		attempt := e.attempt
		e.timer = time.AfterFunc(s.opts.AckTimeout, func() { s.ackTimeout(e.id, attempt) })
		s.logf("sent %s envelope %s (attempt %d)", e.typ, e.id, e.attempt)
		return
	}
	s.sock.outbox = append(s.sock.outbox, e)
}

func (s *Server) ackTimeout(id string, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sock.pending[id]
	if e == nil || e.attempt != attempt || s.closed {
		return
	}
	delete(s.sock.pending, id)
	s.sock.timeouts++
	s.logf("envelope %s not acked within %v", id, s.opts.AckTimeout)
	if (e.typ == "events_api" || s.opts.RetryInteractions) && e.attempt < s.opts.MaxRetries {
		e.attempt++
		e.reason = "timeout"
		s.sendLocked(e)
	}
	s.notifyLocked()
}

// Disconnect sends {"type":"disconnect","reason":"refresh_requested"} to every
// connected client, as Slack does before refreshing a socket. The client
// reconnects through apps.connections.open; new envelopes wait for it. The
// server closes the old sockets itself 5s later if the client has not.
func (s *Server) Disconnect() { s.DisconnectWithReason("refresh_requested") }

// DisconnectWithReason is Disconnect with another reason ("warning",
// "link_disabled", "too_many_websockets", …).
func (s *Server) DisconnectWithReason(reason string) {
	frame, _ := json.Marshal(map[string]any{
		"type": "disconnect", "reason": reason,
		"debug_info": map[string]any{"host": "applink-slackemu"},
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.sock.conns {
		select {
		case c.send <- outFrame{b: frame}:
		default:
		}
		time.AfterFunc(5*time.Second, c.close)
	}
	s.sock.conns = nil
}

// DropConnections closes every socket abruptly (no disconnect frame).
func (s *Server) DropConnections() {
	s.mu.Lock()
	var cs []*wsConn
	for c := range s.sock.all {
		cs = append(cs, c)
	}
	s.sock.conns = nil
	s.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

// RefuseConnections makes Slack's Socket Mode unreachable (on) or
// reachable again (off): while on, apps.connections.open answers
// internal_error, so a client that lost its socket keeps retrying. With
// DropConnections it takes an app offline until it is turned off.
func (s *Server) RefuseConnections(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sock.refusing = on
}

// Connections returns the number of sockets currently receiving envelopes.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sock.conns)
}

// Connects returns how many sockets were opened in total (reconnects included).
func (s *Server) Connects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sock.connects
}

// Pongs returns how many pongs clients sent back for the server's pings.
func (s *Server) Pongs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sock.pongs
}

// Acks returns every ack received, in arrival order.
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.sock.acks...)
}

// AckLatencies returns, per ack received in arrival order, how long the app
// took to ack, measured over the wire (see Ack.Latency).
func (s *Server) AckLatencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Duration, len(s.sock.acks))
	for i, a := range s.sock.acks {
		out[i] = a.Latency
	}
	return out
}

// AckTimeouts returns how many deliveries were not acked within AckTimeout.
func (s *Server) AckTimeouts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sock.timeouts
}

// Pending returns how many envelopes are sent or queued but not yet acked.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sock.pending) + len(s.sock.outbox)
}

// ProtocolErrors returns the frames the app sent that Slack's protocol has
// no place for (see ProtocolError), in arrival order. A correct app leaves
// it empty.
func (s *Server) ProtocolErrors() []ProtocolError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ProtocolError(nil), s.sock.errors...)
}
