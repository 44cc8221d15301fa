package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// ui calls a playground endpoint as the page does.
func ui(t *testing.T, srv *Server, op string, body map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(srv.URL()+"emu/"+op, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if !out.OK {
		t.Fatalf("/emu/%s: %s", op, out.Error)
	}
}

type uiState struct {
	Connected bool `json:"connected"`
	Channels  []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Parent   string `json:"parent"`
		Messages []struct {
			ID      string          `json:"id"`
			Author  string          `json:"author"`
			Webhook bool            `json:"webhook"`
			Content string          `json:"content"`
			Embeds  json.RawMessage `json:"embeds"`
		} `json:"messages"`
	} `json:"channels"`
	Modals []struct {
		ID    string `json:"id"`
		User  string `json:"user"`
		Title string `json:"title"`
	} `json:"modals"`
	Failed []struct {
		User string `json:"user"`
	} `json:"failed"`
	Commands []string `json:"commands"`
}

func state(t *testing.T, srv *Server) uiState {
	t.Helper()
	resp, err := http.Get(srv.URL() + "emu/state")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st uiState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPlayground(t *testing.T) {
	h := start(t, Options{GuildName: "Acme Ops", InteractionTimeout: 500 * time.Millisecond})
	demo := h.srv.SeedDemo()
	carol := demo.Users["carol"]
	h.connect(botIntents)
	h.registerRunbook()

	resp, err := http.Get(h.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Acme Ops") {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	st := state(t, h.srv)
	if !st.Connected || len(st.Commands) != 1 || st.Commands[0] != "/runbook" {
		t.Fatalf("state = %+v", st)
	}

	// A slash command typed in the composer reaches the bot; it opens a modal.
	ui(t, h.srv, "command", map[string]any{"user": carol, "channel": demo.Channels["ops"], "text": "/runbook run name:example-echo"})
	ic := h.interaction()
	if ic.Member.User.ID != carol || ic.ApplicationCommandData().Options[0].Options[0].StringValue() != "example-echo" {
		t.Fatalf("interaction = %+v", ic.Interaction)
	}
	err = h.dg.InteractionRespond(ic.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseModal,
		Data: &discordgo.InteractionResponseData{CustomID: "params", Title: "Parameters", Components: []discordgo.MessageComponent{
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.TextInput{CustomID: "service", Label: "Service", Style: discordgo.TextInputShort}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	st = state(t, h.srv)
	if len(st.Modals) != 1 || st.Modals[0].User != carol || st.Modals[0].Title != "Parameters" {
		t.Fatalf("modals = %+v", st.Modals)
	}
	ui(t, h.srv, "submit", map[string]any{"user": carol, "modal": st.Modals[0].ID, "inputs": map[string]string{"service": "checkout"}})
	sub := h.interaction()
	if v := sub.ModalSubmitData().Components[0].(*discordgo.ActionsRow).Components[0].(*discordgo.TextInput).Value; v != "checkout" {
		t.Fatalf("submitted %q", v)
	}
	// Left unanswered, it shows as failed.
	h.waitFor("the interaction to fail", func() bool { in, _ := h.srv.Interaction(sub.ID); return in.Failed })
	if st := state(t, h.srv); len(st.Failed) != 1 || st.Failed[0].User != carol {
		t.Fatalf("failed = %+v", st.Failed)
	}

	// The alert form posts through the seeded Alertmanager webhook.
	ui(t, h.srv, "alert", map[string]any{"text": "HighCPU", "labels": "service=web", "firing": true})
	m := next[*discordgo.MessageCreate](h)
	if m.ChannelID != demo.Channels["alerts"] || len(m.Embeds) != 1 || m.Embeds[0].Title != "[FIRING:1] HighCPU (web)" {
		t.Fatalf("alert = %+v", m.Message)
	}
	// Buttons on a bot message are clickable from the page.
	card, _ := h.dg.ChannelMessageSendComplex(demo.Channels["incidents"], &discordgo.MessageSend{Content: "Approve?", Components: approvalComponents()})
	ui(t, h.srv, "click", map[string]any{"user": demo.Users["bob"], "message": card.ID, "custom_id": "approve:42"})
	if click := h.interaction(); click.MessageComponentData().CustomID != "approve:42" || click.Member.User.ID != demo.Users["bob"] {
		t.Fatalf("click = %+v", click.Interaction)
	}
	ui(t, h.srv, "message", map[string]any{"user": carol, "channel": demo.Channels["ops"], "text": "hello <@" + h.srv.BotUserID() + ">"})
	if m := next[*discordgo.MessageCreate](h); m.Author.ID != carol || len(m.Mentions) != 1 {
		t.Fatalf("message = %+v", m.Message)
	}
	if snap := h.srv.Snapshot(); !json.Valid(snap) || !bytes.Contains(snap, []byte("Approve?")) {
		t.Fatal("Snapshot lacks the card")
	}
}
