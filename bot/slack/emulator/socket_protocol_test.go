package emulator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawSocket opens a Socket Mode connection without slack-go, to send
// frames a real client would (or should not) send.
func (h *harness) rawSocket() *websocket.Conn {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, url, err := h.api.StartSocketModeContext(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = ws.Close() })
	if got := readFrame(h.t, ws)["type"]; got != "hello" {
		h.t.Fatalf("first frame type %v, want hello", got)
	}
	return ws
}

func readFrame(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

func TestAckingHelloIsAProtocolError(t *testing.T) {
	h := start(t, Options{})
	hello := h.connect()
	if len(h.srv.ProtocolErrors()) != 0 {
		t.Fatalf("protocol errors before any ack: %v", h.srv.ProtocolErrors())
	}
	// What a careless bot does: ack every event that carries a request.
	if hello.Request == nil || hello.Request.EnvelopeID != "" {
		t.Fatalf("hello request %+v: want one without envelope_id", hello.Request)
	}
	if err := h.sm.Ack(*hello.Request); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the protocol error", func() bool { return len(h.srv.ProtocolErrors()) == 1 })
	pe := h.srv.ProtocolErrors()[0]
	if !strings.Contains(pe.Reason, "hello") || !strings.Contains(pe.Frame, `"envelope_id":""`) {
		t.Fatalf("protocol error %+v", pe)
	}
	if len(h.srv.Acks()) != 0 {
		t.Fatalf("the hello ack was counted as an ack: %+v", h.srv.Acks())
	}
}

func TestUnknownFramesAreProtocolErrors(t *testing.T) {
	h := start(t, Options{})
	ws := h.rawSocket()
	for _, frame := range []string{
		`{"envelope_id":"not-a-real-envelope"}`,
		`{"type":"ping"}`,
		`not json`,
	} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("three protocol errors", func() bool { return len(h.srv.ProtocolErrors()) == 3 })
	errs := h.srv.ProtocolErrors()
	for i, want := range []string{"never sent", "without envelope_id", "not a JSON"} {
		if !strings.Contains(errs[i].Reason, want) {
			t.Errorf("error %d = %q, want it to mention %q", i, errs[i].Reason, want)
		}
	}

	// A real ack is not an error, and acking it twice is not either
	// (a late ack of a redelivered event is legitimate).
	if err := h.srv.SlashCommand(h.alice, h.ops, "x"); err != nil {
		t.Fatal(err)
	}
	id := readFrame(t, ws)["envelope_id"].(string)
	for range 2 {
		if err := ws.WriteJSON(map[string]any{"envelope_id": id}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("the ack", func() bool { return len(h.srv.Acks()) == 1 })
	// Flush: a frame after the duplicate, so the duplicate has been handled.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"envelope_id":"flush"}`)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the flush frame", func() bool { return len(h.srv.ProtocolErrors()) == 4 })
	if got := h.srv.ProtocolErrors()[3].Frame; got != `{"envelope_id":"flush"}` {
		t.Fatalf("4th protocol error is %q, want the flush frame", got)
	}
}

func TestAckLatencyIsMeasuredOverTheWire(t *testing.T) {
	h := start(t, Options{})
	ws := h.rawSocket()
	const hold = 30 * time.Millisecond
	if err := h.srv.SlashCommand(h.alice, h.ops, "x"); err != nil {
		t.Fatal(err)
	}
	id := readFrame(t, ws)["envelope_id"].(string)
	read := time.Now()
	time.Sleep(hold) // the app working before it acks (not a wait for anything)
	acking := time.Now()
	if err := ws.WriteJSON(map[string]any{"envelope_id": id}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the ack", func() bool { return len(h.srv.Acks()) == 1 })
	seen := time.Now()
	a := h.srv.Acks()[0]
	if a.SentAt.After(read) || a.ReceivedAt.Before(acking) || a.ReceivedAt.After(seen) {
		t.Fatalf("sent %v, received %v; the client read at %v and acked at %v", a.SentAt, a.ReceivedAt, read, acking)
	}
	if a.Latency != a.ReceivedAt.Sub(a.SentAt) || a.Latency < hold {
		t.Fatalf("latency %v, want received−sent and ≥ the %v the app held the envelope", a.Latency, hold)
	}
	if got := h.srv.AckLatencies(); len(got) != 1 || got[0] != a.Latency {
		t.Fatalf("AckLatencies = %v", got)
	}
}
