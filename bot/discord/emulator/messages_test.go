package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
)

// rawRequest sends body to the emulator's API with the bot token and
// returns status and decoded JSON.
func rawRequest(t *testing.T, srv *Server, method, path, auth string, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL()+strings.TrimPrefix(path, "/"), strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestMessageLimits(t *testing.T) {
	h := start(t, Options{RateLimit: RateLimitOptions{Disabled: true}})
	long := func(n int) string { return strings.Repeat("y", n) }
	row := func(cs ...discordgo.MessageComponent) []discordgo.MessageComponent {
		return []discordgo.MessageComponent{discordgo.ActionsRow{Components: cs}}
	}
	embeds := func(n int) []*discordgo.MessageEmbed {
		var out []*discordgo.MessageEmbed
		for range n {
			out = append(out, &discordgo.MessageEmbed{Title: "t"})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		msg  discordgo.MessageSend
		code int
		path string
	}{
		{"empty message", discordgo.MessageSend{}, 50006, ""},
		{"content over 2000", discordgo.MessageSend{Content: long(2001)}, 50035, "content"},
		{"eleven embeds", discordgo.MessageSend{Embeds: embeds(11)}, 50035, "embeds"},
		{"embed title over 256", discordgo.MessageSend{Embeds: []*discordgo.MessageEmbed{{Title: long(257)}}}, 50035, "embeds.0.title"},
		{"embed field value over 1024", discordgo.MessageSend{Embeds: []*discordgo.MessageEmbed{{Fields: []*discordgo.MessageEmbedField{{Name: "n", Value: long(1025)}}}}}, 50035, "embeds.0.fields.0.value"},
		{"embeds over 6000 in total", discordgo.MessageSend{Embeds: []*discordgo.MessageEmbed{{Description: long(4000)}, {Description: long(2001)}}}, 50035, "embeds"},
		{"duplicate custom_id", discordgo.MessageSend{Content: "x", Components: row(
			discordgo.Button{Label: "a", CustomID: "same"}, discordgo.Button{Label: "b", CustomID: "same"})}, 50035, "components.0.components.1.custom_id"},
		{"link button with custom_id", discordgo.MessageSend{Content: "x", Components: row(
			discordgo.Button{Label: "a", Style: discordgo.LinkButton, URL: "https://x", CustomID: "c"})}, 50035, "components.0.components.0.custom_id"},
		{"button without custom_id", discordgo.MessageSend{Content: "x", Components: row(discordgo.Button{Label: "a"})}, 50035, "components.0.components.0.custom_id"},
		{"text input in a message", discordgo.MessageSend{Content: "x", Components: row(discordgo.TextInput{CustomID: "t", Label: "T", Style: 1})}, 50035, "components.0.components.0.type"},
		{"six action rows", discordgo.MessageSend{Content: "x", Components: []discordgo.MessageComponent{
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.Button{Label: "1", CustomID: "1"}}},
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.Button{Label: "2", CustomID: "2"}}},
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.Button{Label: "3", CustomID: "3"}}},
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.Button{Label: "4", CustomID: "4"}}},
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.Button{Label: "5", CustomID: "5"}}},
			discordgo.ActionsRow{Components: []discordgo.MessageComponent{discordgo.Button{Label: "6", CustomID: "6"}}},
		}}, 50035, "components"},
		{"ephemeral flag on a channel message", discordgo.MessageSend{Content: "x", Flags: discordgo.MessageFlagsEphemeral}, 50035, "flags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.msg
			_, err := h.dg.ChannelMessageSendComplex(h.ops, &msg)
			re := restErr(t, err, 400, tc.code)
			if tc.path == "" {
				return
			}
			var body struct {
				Errors map[string]any `json:"errors"`
			}
			_ = json.Unmarshal(re.ResponseBody, &body)
			node := any(body.Errors)
			for _, k := range strings.Split(tc.path, ".") {
				m, _ := node.(map[string]any)
				node = m[k]
			}
			if m, _ := node.(map[string]any); m["_errors"] == nil {
				t.Fatalf("no _errors at %s in %s", tc.path, re.ResponseBody)
			}
		})
	}
	if n := len(h.srv.Messages("ops")); n != 0 {
		t.Fatalf("%d invalid messages stored", n)
	}
	// At the limits everything is accepted.
	m, err := h.dg.ChannelMessageSendComplex(h.ops, &discordgo.MessageSend{Content: long(2000),
		Embeds: []*discordgo.MessageEmbed{{Title: long(256), Description: long(4096), Color: 0x992D22}}, Components: approvalComponents()})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Embeds) != 1 || m.Embeds[0].Type != discordgo.EmbedTypeRich || len(m.Components) != 1 {
		t.Fatalf("stored message = %+v", m)
	}
	if b := m.Components[0].(*discordgo.ActionsRow).Components[0].(*discordgo.Button); b.ID == 0 || b.CustomID != "approve:42" {
		t.Fatalf("button echoed as %+v", b)
	}
}

func TestEditHistoryAndMessageUpdate(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	m, err := h.dg.ChannelMessageSend(h.ops, "⏳ step 1: pending")
	if err != nil {
		t.Fatal(err)
	}
	if got := next[*discordgo.MessageCreate](h); got.ID != m.ID || got.Author.ID != h.srv.BotUserID() {
		t.Fatalf("own MESSAGE_CREATE = %+v", got.Message)
	}
	for _, text := range []string{"🔄 step 1: running", "✅ step 1: ok (2s)"} {
		if _, err := h.dg.ChannelMessageEdit(h.ops, m.ID, text); err != nil {
			t.Fatal(err)
		}
		if u := next[*discordgo.MessageUpdate](h); u.Content != text || u.EditedTimestamp == nil {
			t.Fatalf("MESSAGE_UPDATE = %+v", u.Message)
		}
	}
	got, _ := h.srv.Message(m.ID)
	if got.Edits != 2 || got.Content != "✅ step 1: ok (2s)" || len(got.History) != 2 || got.History[0].Content != "⏳ step 1: pending" {
		t.Fatalf("message = %+v", got)
	}
	// A human's message cannot be edited by the bot.
	hid, _ := h.srv.PostMessage("alice", "ops", "mine")
	_, err = h.dg.ChannelMessageEdit(h.ops, hid, "yours")
	restErr(t, err, 403, 50005)
	// Fetch and list, newest first.
	list, err := h.dg.ChannelMessages(h.ops, 10, "", "", "")
	if err != nil || len(list) != 2 || list[0].ID != hid || list[1].ID != m.ID {
		t.Fatalf("ChannelMessages = %v, %v", list, err)
	}
	if one, err := h.dg.ChannelMessage(h.ops, m.ID); err != nil || one.Content != got.Content {
		t.Fatalf("ChannelMessage = %+v, %v", one, err)
	}
}

func TestThreads(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	parent, err := h.dg.ChannelMessageSend(h.ops, "Run 42: restart-web")
	if err != nil {
		t.Fatal(err)
	}
	th, err := h.dg.MessageThreadStartComplex(h.ops, parent.ID, &discordgo.ThreadStart{Name: "run 42", AutoArchiveDuration: 1440})
	if err != nil {
		t.Fatal(err)
	}
	if th.ID != parent.ID || th.Type != discordgo.ChannelTypeGuildPublicThread || th.ParentID != h.ops || th.ThreadMetadata == nil {
		t.Fatalf("thread = %+v", th)
	}
	if tc := next[*discordgo.ThreadCreate](h); tc.ID != th.ID || !tc.NewlyCreated {
		t.Fatalf("THREAD_CREATE = %+v", tc.Channel)
	}
	_, err = h.dg.MessageThreadStartComplex(h.ops, parent.ID, &discordgo.ThreadStart{Name: "again"})
	restErr(t, err, 400, 160004)
	_, err = h.dg.MessageThreadStartComplex(h.ops, parent.ID, &discordgo.ThreadStart{Name: strings.Repeat("n", 101)})
	restErr(t, err, 400, 50035)

	step, err := h.dg.ChannelMessageSend(th.ID, "step 1: pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.PostMessage("bob", th.ID, "looking"); err != nil {
		t.Fatal(err)
	}
	msgs := h.srv.Messages(th.ID)
	if len(msgs) != 2 || msgs[0].ID != step.ID || msgs[1].Author != h.bob || msgs[0].GuildID != h.srv.GuildID() {
		t.Fatalf("thread messages = %+v", msgs)
	}
	if p, _ := h.srv.Message(parent.ID); p.ThreadID != th.ID {
		t.Fatalf("parent.ThreadID = %q", p.ThreadID)
	}
	if got := h.srv.Threads("ops"); len(got) != 1 || got[0].ID != th.ID {
		t.Fatalf("Threads(ops) = %+v", got)
	}

	// Without a message: a private thread by default (API v9), then joined.
	priv, err := h.dg.ThreadStartComplex(h.ops, &discordgo.ThreadStart{Name: "approvers", AutoArchiveDuration: 60})
	if err != nil || priv.Type != discordgo.ChannelTypeGuildPrivateThread {
		t.Fatalf("ThreadStart = %+v, %v", priv, err)
	}
	if err := h.dg.ThreadJoin(priv.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.JoinThread(h.alice, priv.ID); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.srv.Channel(priv.ID); len(c.Members) != 2 {
		t.Fatalf("members = %v", c.Members)
	}
	err = h.dg.ThreadJoin(h.ops)
	restErr(t, err, 400, 50024)
}

func TestRolesAndMembers(t *testing.T) {
	h := start(t, Options{})
	sre := h.srv.AddRole(Role{Name: "sre-leads", Permissions: 8192, Members: []string{h.alice}})
	m, err := h.dg.GuildMember(h.srv.GuildID(), h.alice)
	if err != nil || m.User.ID != h.alice || len(m.Roles) != 1 || m.Roles[0] != sre {
		t.Fatalf("GuildMember(alice) = %+v, %v", m, err)
	}
	h.srv.GrantRole(sre, h.bob)
	if m, _ := h.dg.GuildMember(h.srv.GuildID(), h.bob); len(m.Roles) != 1 {
		t.Fatalf("bob's roles = %v", m.Roles)
	}
	roles, err := h.dg.GuildRoles(h.srv.GuildID())
	if err != nil || len(roles) != 2 || roles[0].ID != h.srv.GuildID() || roles[1].Permissions != 8192 {
		t.Fatalf("GuildRoles = %+v, %v", roles, err)
	}
	_, err = h.dg.GuildMember(h.srv.GuildID(), "123")
	restErr(t, err, 404, 10007)
	_, err = h.dg.GuildMember("123", h.alice)
	restErr(t, err, 404, 10004)
	members, err := h.dg.GuildMembers(h.srv.GuildID(), "", 100)
	if err != nil || len(members) != 3 {
		t.Fatalf("GuildMembers = %d, %v", len(members), err)
	}
}

func TestRESTErrors(t *testing.T) {
	h := start(t, Options{})
	auth := "Bot " + h.srv.Token()
	for _, tc := range []struct {
		name, method, path, auth, body string
		status, code                   int
	}{
		{"no token", "GET", "api/v10/users/@me", "", "", 401, 0},
		{"wrong token", "GET", "api/v10/users/@me", "Bot nope", "", 401, 0},
		{"unknown channel", "POST", "api/v10/channels/1/messages", auth, `{"content":"x"}`, 404, 10003},
		{"unknown message", "GET", "api/v9/channels/" + h.ops + "/messages/1", auth, "", 404, 10008},
		{"unknown route", "GET", "api/v10/nothing/here", auth, "", 404, 0},
		{"wrong method", "PUT", "api/v10/channels/" + h.ops + "/messages", auth, "", 405, 0},
		{"invalid JSON", "POST", "api/v10/channels/" + h.ops + "/messages", auth, `{"content":`, 400, 50109},
		{"API version 6", "GET", "api/v6/users/@me", auth, "", 400, 50041},
		{"other application's commands", "GET", "api/v10/applications/1/commands", auth, "", 403, 50001},
		{"unknown interaction", "POST", "api/v10/interactions/1/tok/callback", "", `{"type":4,"data":{"content":"x"}}`, 404, 10062},
		{"unknown webhook", "POST", "api/webhooks/1/tok", "", `{"content":"x"}`, 404, 10015},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := rawRequest(t, h.srv, tc.method, tc.path, tc.auth, tc.body)
			if status != tc.status || body["code"] != float64(tc.code) || body["message"] == "" {
				t.Fatalf("got %d %v, want %d code %d", status, body, tc.status, tc.code)
			}
		})
	}
	if h.srv.Calls("GET /users/@me") != 2 || h.srv.Calls("unknown") != 2 {
		t.Fatalf("calls = %v", h.srv.CallCounts())
	}
	// v9 and v10 are the same API.
	for _, v := range []string{"v9", "v10"} {
		if status, me := rawRequest(t, h.srv, "GET", "api/"+v+"/users/@me", auth, ""); status != 200 || me["id"] != h.srv.BotUserID() {
			t.Fatalf("%s: %d %v", v, status, me)
		}
	}
}

func TestAllowedMentions(t *testing.T) {
	h := start(t, Options{})
	oncall := h.srv.AddRole(Role{Name: "oncall", Members: []string{h.bob}})
	text := "Approval needed <@" + h.alice + "> <@&" + oncall + ">"
	m, err := h.dg.ChannelMessageSendComplex(h.ops, &discordgo.MessageSend{Content: text,
		AllowedMentions: &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{discordgo.AllowedMentionTypeUsers}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := h.srv.Message(m.ID)
	if len(got.Mentions) != 1 || got.Mentions[0] != h.alice || len(got.MentionRoles) != 0 {
		t.Fatalf("mentions %v roles %v", got.Mentions, got.MentionRoles)
	}
	m, _ = h.dg.ChannelMessageSend(h.ops, text) // default: everything pings
	if got, _ := h.srv.Message(m.ID); len(got.Mentions) != 1 || len(got.MentionRoles) != 1 {
		t.Fatalf("default mentions %v roles %v", got.Mentions, got.MentionRoles)
	}
	_, err = h.dg.ChannelMessageSendComplex(h.ops, &discordgo.MessageSend{Content: text,
		AllowedMentions: &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{discordgo.AllowedMentionTypeUsers}, Users: []string{h.alice}}})
	restErr(t, err, 400, 50035)
}

func TestMultipartPayloadJSON(t *testing.T) {
	h := start(t, Options{})
	_, err := h.dg.ChannelMessageSendComplex(h.ops, &discordgo.MessageSend{Content: "log attached",
		Files: []*discordgo.File{{Name: "out.txt", ContentType: "text/plain", Reader: bytes.NewReader([]byte("hello"))}}})
	if err != nil {
		t.Fatal(err)
	}
	if msgs := h.srv.Messages("ops"); len(msgs) != 1 || msgs[0].Content != "log attached" {
		t.Fatalf("messages = %+v", msgs)
	}
}
