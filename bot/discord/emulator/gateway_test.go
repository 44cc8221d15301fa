package emulator

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
)

func TestConnectReadyGuildCreate(t *testing.T) {
	h := start(t, Options{})
	sre := h.srv.AddRole(Role{Name: "sre", Permissions: 1 << 11, Members: []string{h.alice}})
	h.connect(botIntents)

	ready := next[*discordgo.Ready](h)
	if ready.SessionID == "" || ready.User.ID != h.srv.BotUserID() || !ready.User.Bot {
		t.Fatalf("READY = session %q user %+v", ready.SessionID, ready.User)
	}
	if len(ready.Guilds) != 1 || ready.Guilds[0].ID != h.srv.GuildID() || !ready.Guilds[0].Unavailable {
		t.Fatalf("READY guilds = %+v", ready.Guilds)
	}
	gc := next[*discordgo.GuildCreate](h)
	if gc.ID != h.srv.GuildID() || gc.Unavailable {
		t.Fatalf("GUILD_CREATE = %+v", gc.Guild)
	}
	// discordgo's State is fed from GUILD_CREATE.
	ch, err := h.dg.State.Channel(h.ops)
	if err != nil || ch.Name != "ops" || ch.GuildID != h.srv.GuildID() {
		t.Fatalf("State.Channel(ops) = %+v, %v", ch, err)
	}
	role, err := h.dg.State.Role(h.srv.GuildID(), sre)
	if err != nil || role.Name != "sre" || role.Permissions != 1<<11 {
		t.Fatalf("State.Role(sre) = %+v, %v", role, err)
	}
	member, err := h.dg.State.Member(h.srv.GuildID(), h.alice)
	if err != nil || len(member.Roles) != 1 || member.Roles[0] != sre {
		t.Fatalf("State.Member(alice) = %+v, %v", member, err)
	}

	ids := h.srv.Identifies()
	if len(ids) != 1 || ids[0].Intents != int(botIntents) || ids[0].OS != runtime.GOOS || !strings.HasPrefix(ids[0].Browser, "DiscordGo") {
		t.Fatalf("Identifies = %+v", ids)
	}
	// discordgo heartbeats at once after READY; every beat is ACKed.
	h.waitFor("a heartbeat", func() bool { return h.srv.Heartbeats() >= 1 })
	poll(t, "the ACK", func() bool {
		h.dg.RLock()
		defer h.dg.RUnlock()
		return !h.dg.LastHeartbeatAck.Before(h.dg.LastHeartbeatSent)
	})
	if !h.srv.Connected() {
		t.Fatal("Connected() = false")
	}
}

func TestMessageContentIntent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		intents     discordgo.Intent
		mention     bool
		wantContent bool
	}{
		{"with MESSAGE_CONTENT", botIntents, false, true},
		{"without MESSAGE_CONTENT", discordgo.IntentsAllWithoutPrivileged, false, false},
		{"without, but mentioning the bot", discordgo.IntentsAllWithoutPrivileged, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Options{})
			h.connect(tc.intents)
			text := "deploy failed on web-1"
			if tc.mention {
				text = "<@" + h.srv.BotUserID() + "> " + text
			}
			if _, err := h.srv.PostMessage("alice", "#ops", text); err != nil {
				t.Fatal(err)
			}
			m := next[*discordgo.MessageCreate](h)
			if m.Author.ID != h.alice || m.Member == nil || m.GuildID != h.srv.GuildID() {
				t.Fatalf("MESSAGE_CREATE author %+v member %+v guild %q", m.Author, m.Member, m.GuildID)
			}
			if got := m.Content != ""; got != tc.wantContent {
				t.Fatalf("content = %q, want content: %v", m.Content, tc.wantContent)
			}
		})
	}
}

func TestDisallowedIntentClosesWith4014(t *testing.T) {
	h := start(t, Options{DeniedIntents: IntentMessageContent})
	h.dg.Identify.Intents = botIntents
	err := h.dg.Open()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseDisallowedIntents {
		t.Fatalf("Open() = %v, want close 4014", err)
	}
	if ids := h.srv.Identifies(); len(ids) != 1 || ids[0].CloseCode != 4014 || ids[0].SessionID != "" {
		t.Fatalf("Identifies = %+v", ids)
	}
	// Without the privileged intent the same bot connects.
	h.dg.Identify.Intents = discordgo.IntentsAllWithoutPrivileged
	h.connect(discordgo.IntentsAllWithoutPrivileged)
	next[*discordgo.Ready](h)
}

func TestBadTokenRefused(t *testing.T) {
	h := start(t, Options{})
	bad := h.session("Bot not-the-token")
	err := bad.Open()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseAuthenticationFailed {
		t.Fatalf("Open() with a bad token = %v, want close 4004", err)
	}
	_, err = bad.User("@me")
	restErr(t, err, 401, 0)
	_, err = h.session(h.srv.Token()).User("@me") // no "Bot " prefix
	restErr(t, err, 401, 0)
	me, err := h.dg.User("@me")
	if err != nil || me.ID != h.srv.BotUserID() {
		t.Fatalf("User(@me) = %+v, %v", me, err)
	}
}

// skipUnderRace skips a test that makes the real discordgo client
// reconnect: discordgo v0.29.0's heartbeat and read loops can both notice a
// dropped connection and reconnect at once, racing on the session's
// connection field (an upstream data race, not ours). test/run.sh runs
// these tests again without the race detector.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceDetector {
		t.Skip("discordgo's reconnect races with itself under -race (upstream); run without -race by test/run.sh")
	}
}

func TestResumeReplaysMissedEvents(t *testing.T) {
	skipUnderRace(t)
	h := start(t, Options{})
	h.connect(botIntents)
	next[*discordgo.GuildCreate](h) // the client has seen every dispatch so far

	h.srv.HoldConnections(true)
	h.srv.DropConnections()
	h.waitFor("discordgo to dial again", func() bool { return !h.srv.Connected() && h.srv.GatewayDials() == 2 })
	if _, err := h.srv.PostMessage("alice", "ops", "missed while away"); err != nil {
		t.Fatal(err)
	}
	h.srv.HoldConnections(false)

	m := next[*discordgo.MessageCreate](h)
	if m.Content != "missed while away" {
		t.Fatalf("replayed content = %q", m.Content)
	}
	next[*discordgo.Resumed](h)
	// discordgo's heartbeat and read loops can both notice the drop and
	// resume twice; either way it is one session.
	if h.srv.Resumes() < 1 || h.srv.Replayed() < 1 || len(h.srv.Identifies()) != 1 {
		t.Fatalf("resumes %d replayed %d identifies %d", h.srv.Resumes(), h.srv.Replayed(), len(h.srv.Identifies()))
	}
	// The session goes on: new events arrive live.
	if _, err := h.srv.PostMessage("bob", "ops", "live again"); err != nil {
		t.Fatal(err)
	}
	for m := next[*discordgo.MessageCreate](h); m.Content != "live again"; m = next[*discordgo.MessageCreate](h) {
		if m.Content != "missed while away" {
			t.Fatalf("unexpected message %q", m.Content)
		}
	}
}

func TestReconnectOpcodeLeadsToResume(t *testing.T) {
	skipUnderRace(t)
	h := start(t, Options{})
	h.connect(botIntents)
	next[*discordgo.Ready](h)
	h.srv.Reconnect()
	next[*discordgo.Resumed](h)
	if h.srv.Resumes() < 1 || h.srv.GatewayDials() < 2 || len(h.srv.Identifies()) != 1 {
		t.Fatalf("resumes %d dials %d", h.srv.Resumes(), h.srv.GatewayDials())
	}
}

func TestInvalidSessionReidentifies(t *testing.T) {
	skipUnderRace(t)
	h := start(t, Options{})
	h.connect(botIntents)
	first := next[*discordgo.Ready](h)
	h.srv.InvalidateSession(false)
	second := next[*discordgo.Ready](h)
	if second.SessionID == first.SessionID {
		t.Fatal("same session after INVALID_SESSION")
	}
	if n := len(h.srv.Identifies()); n != 2 || h.srv.GatewayDials() != 1 {
		t.Fatalf("identifies %d dials %d, want 2 on one socket", n, h.srv.GatewayDials())
	}
}

// rawGateway dials the emulator's gateway without discordgo.
func rawGateway(t *testing.T, srv *Server, query string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(srv.GatewayURL()+"/?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// readUntilClose reads frames until the server closes; it returns the
// close code and the ops seen.
func readUntilClose(t *testing.T, ws *websocket.Conn) (int, []int) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ops []int
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ops
			}
			t.Fatalf("read: %v", err)
		}
		var p struct {
			Op int `json:"op"`
		}
		_ = json.Unmarshal(data, &p)
		ops = append(ops, p.Op)
	}
}

func TestGatewayProtocolErrors(t *testing.T) {
	srv := New(Options{HeartbeatInterval: 300 * time.Millisecond})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	identify := `{"op":2,"d":{"token":"Bot ` + srv.Token() + `","intents":513,"properties":{"os":"linux"}}}`
	for _, tc := range []struct {
		name   string
		query  string
		frames []string
		want   int
	}{
		{"unknown opcode", "v=10&encoding=json", []string{`{"op":42,"d":null}`}, CloseUnknownOpcode},
		{"not JSON", "v=10&encoding=json", []string{`{op`}, CloseDecodeError},
		{"payload over 4096 bytes", "v=10&encoding=json", []string{`{"op":3,"d":"` + strings.Repeat("x", 4100) + `"}`}, CloseDecodeError},
		{"presence before identify", "v=10&encoding=json", []string{`{"op":3,"d":{}}`}, CloseNotAuthenticated},
		{"identify twice", "v=10&encoding=json", []string{identify, identify}, CloseAlreadyAuthenticated},
		{"wrong token", "v=10&encoding=json", []string{`{"op":2,"d":{"token":"nope","intents":1}}`}, CloseAuthenticationFailed},
		{"unknown intent bits", "v=10&encoding=json", []string{`{"op":2,"d":{"token":"` + srv.Token() + `","intents":1073741824}}`}, CloseInvalidIntents},
		{"no heartbeats", "v=10&encoding=json", []string{identify}, CloseSessionTimedOut},
		{"API version 8", "v=8&encoding=json", nil, CloseInvalidAPIVersion},
		{"etf encoding", "v=10&encoding=etf", nil, CloseDecodeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := rawGateway(t, srv, tc.query)
			for _, f := range tc.frames {
				if err := ws.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
					t.Fatal(err)
				}
			}
			code, ops := readUntilClose(t, ws)
			if code != tc.want {
				t.Fatalf("close code %d, want %d (ops %v)", code, tc.want, ops)
			}
			if tc.frames != nil && (len(ops) == 0 || ops[0] != 10) {
				t.Fatalf("first frame op %v, want HELLO", ops)
			}
		})
	}
}

func TestHeartbeatACKAndServerHeartbeatRequest(t *testing.T) {
	srv := New(Options{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	ws := rawGateway(t, srv, "v=10&encoding=json")
	var hello struct {
		Op int `json:"op"`
		D  struct {
			HeartbeatInterval int `json:"heartbeat_interval"`
		} `json:"d"`
	}
	if err := ws.ReadJSON(&hello); err != nil || hello.Op != 10 || hello.D.HeartbeatInterval != 41250 {
		t.Fatalf("HELLO = %+v, %v", hello, err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":1,"d":null}`)); err != nil {
		t.Fatal(err)
	}
	var ack struct {
		Op int `json:"op"`
	}
	if err := ws.ReadJSON(&ack); err != nil || ack.Op != 11 {
		t.Fatalf("after op 1: %+v, %v", ack, err)
	}
	srv.SetHeartbeatAcks(false)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":1,"d":null}`)); err != nil {
		t.Fatal(err)
	}
	srv.CloseGateway(CloseUnknownError)
	code, ops := readUntilClose(t, ws)
	if code != CloseUnknownError || len(ops) != 0 {
		t.Fatalf("close %d ops %v: want 4000 and no ACK while ACKs are off", code, ops)
	}
}
