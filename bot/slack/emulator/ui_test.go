package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

func uiPost(t *testing.T, h *harness, op string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(h.srv.URL()+"emu/"+op, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUIPageAndState(t *testing.T) {
	h := start(t, Options{})
	resp, err := http.Get(h.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `const CMD = "/runbook"`) || !strings.Contains(string(page), "<title>Emulator · slackemu</title>") {
		t.Fatalf("page %d:\n%.600s", resp.StatusCode, page)
	}
	_, ts, err := h.api.PostMessage(h.ops, slack.MsgOptionText("approve?", false), approvalBlocks())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("reply", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(h.srv.URL() + "emu/state")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Users    []map[string]any `json:"users"`
		Channels []struct {
			ID       string      `json:"id"`
			Messages []uiMessage `json:"messages"`
		} `json:"channels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if len(st.Users) != 3 || len(st.Channels) != 1 || len(st.Channels[0].Messages) != 1 {
		t.Fatalf("state %+v", st)
	}
	if m := st.Channels[0].Messages[0]; m.TS != ts || m.Author != "runbookbot" || !m.IsBot || len(m.Replies) != 1 || m.Replies[0].Text != "reply" {
		t.Fatalf("message %+v", m)
	}

	// Permalinks open the UI.
	link := h.srv.Permalink(h.ops, ts)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/#"+h.ops {
		t.Fatalf("permalink %s → %d %s", link, resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestUIDrivesTheBot(t *testing.T) {
	h := start(t, Options{})
	h.connect()

	if out := uiPost(t, h, "command", map[string]any{"user": h.alice, "channel": h.ops, "text": "/runbook restart web"}); out["ok"] != true {
		t.Fatalf("command %v", out)
	}
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	cmd := evt.Data.(slack.SlashCommand)
	if cmd.Command != "/runbook" || cmd.Text != "restart web" || cmd.UserID != h.alice {
		t.Fatalf("command %+v", cmd)
	}
	_ = h.sm.Ack(*evt.Request)

	_, ts, _ := h.api.PostMessage(h.ops, slack.MsgOptionText("approve?", false), approvalBlocks())
	if out := uiPost(t, h, "click", map[string]any{"user": h.bob, "channel": h.ops, "ts": ts, "action_id": "approve"}); out["ok"] != true {
		t.Fatalf("click %v", out)
	}
	evt = h.waitEvent(socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	_ = h.sm.Ack(*evt.Request)
	if cb.User.ID != h.bob || cb.ActionCallback.BlockActions[0].ActionID != "approve" {
		t.Fatalf("click %+v", cb)
	}

	view, err := h.api.OpenView(cb.TriggerID, rejectModal())
	if err != nil {
		t.Fatal(err)
	}
	if out := uiPost(t, h, "submit", map[string]any{"user": h.bob, "view_id": view.ID,
		"values": map[string]map[string]string{"reason": {"reason_input": "nope"}}}); out["ok"] != true {
		t.Fatalf("submit %v", out)
	}
	evt = h.waitEvent(socketmode.EventTypeInteractive)
	_ = h.sm.Ack(*evt.Request)
	if got := evt.Data.(slack.InteractionCallback).View.State.Values["reason"]["reason_input"].Value; got != "nope" {
		t.Fatalf("submitted %q", got)
	}

	if out := uiPost(t, h, "message", map[string]any{"user": h.alice, "channel": h.ops, "thread_ts": ts, "text": "thanks"}); out["ok"] != true {
		t.Fatalf("message %v", out)
	}
	evt = h.waitEvent(socketmode.EventTypeEventsAPI)
	_ = h.sm.Ack(*evt.Request)
	if r := h.srv.Replies(h.ops, ts); len(r) != 1 || r[0].User != h.alice {
		t.Fatalf("replies %+v", r)
	}
	if out := uiPost(t, h, "click", map[string]any{"user": h.bob, "channel": h.ops, "ts": "1.000000", "action_id": "approve"}); out["ok"] != false {
		t.Fatalf("bad click accepted: %v", out)
	}
	if out := uiPost(t, h, "ratelimit", map[string]any{"enabled": false}); out["ok"] != true {
		t.Fatal(out)
	}
}

func TestPlaygroundHelpers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Run(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	demo := srv.SeedDemo()
	if len(demo.Users) != 3 || demo.Channels["alerts"] == "" || !strings.HasPrefix(demo.AlertWebhook, srv.URL()+"services/") {
		t.Fatalf("demo %+v", demo)
	}
	if err := srv.FireAlert("HighCPU", map[string]string{"service": "web", "env": "prod"}, true); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv}
	b, _ := json.Marshal(map[string]any{"text": "HighCPU", "labels": "service=web", "firing": false})
	resp, err := http.Post(srv.URL()+"emu/alert", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	h.waitFor("two alerts", func() bool { return len(srv.Messages("#alerts")) == 2 })
	ms := srv.Messages("alerts")
	if !strings.Contains(string(ms[0].Attachments), `"title":"[FIRING:1] HighCPU (prod web)"`) ||
		!strings.Contains(string(ms[1].Attachments), `"color":"2eb886"`) || ms[0].Username != "Alertmanager" {
		t.Fatalf("alerts %s / %s", ms[0].Attachments, ms[1].Attachments)
	}
	if srv.Pending() != 2 {
		t.Fatalf("pending events %d, want 2 queued for the bot", srv.Pending())
	}
	if !json.Valid(srv.Snapshot()) {
		t.Fatal("snapshot is not JSON")
	}
	cancel()
	h.waitFor("closed by ctx", srv.Closed)
	if resp, err := http.Get(srv.URL()); err == nil {
		_ = resp.Body.Close()
		t.Fatal("server still serving after ctx was cancelled")
	}
}

func TestUIStateCarriesSlackRendering(t *testing.T) {
	h := start(t, Options{})
	gid := h.srv.AddUserGroup(UserGroup{Handle: "oncall", Members: []string{h.bob}})
	button := slack.NewButtonBlockElement("approve", "x", slack.NewTextBlockObject("plain_text", ":white_check_mark: Approve", true, false))
	_, ts, err := h.api.PostMessage(h.ops,
		slack.MsgOptionText(":gear: *restart* by <@"+h.alice+"> in <#"+h.ops+">", false),
		slack.MsgOptionBlocks(
			slack.NewSectionBlock(mrkdwn(":hourglass_flowing_sand: waiting for <!subteam^"+gid+">"), nil, nil),
			slack.NewActionBlock("act", button),
		),
		slack.MsgOptionAttachments(slack.Attachment{Title: ":x: failed", Text: "_step_ `restart`",
			Fields: []slack.AttachmentField{{Title: "by", Value: "<@" + h.bob + ">"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("~old~ a &lt; b", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatal(err)
	}
	if err := h.api.AddReaction("eyes", slack.ItemRef{Channel: h.ops, Timestamp: ts}); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(h.srv.URL() + "emu/state")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st struct {
		Channels []struct {
			Messages []uiMessage `json:"messages"`
		} `json:"channels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	m := st.Channels[0].Messages[0]
	var blocks []struct {
		Text     struct{ HTML string } `json:"text"`
		Elements []struct {
			Text struct{ HTML string } `json:"text"`
		} `json:"elements"`
	}
	var atts []struct {
		HTMLTitle string `json:"html_title"`
		HTMLText  string `json:"html_text"`
		Fields    []struct {
			HTMLValue string `json:"html_value"`
		} `json:"fields"`
	}
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(m.Attachments, &atts); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ where, got, want string }{
		{"text", m.HTML, `<span class="emoji" title=":gear:">⚙️</span> <b>restart</b> by <span class="mention">@alice</span> in <span class="mention">#ops</span>`},
		{"section", blocks[0].Text.HTML, `<span class="emoji" title=":hourglass_flowing_sand:">⏳</span> waiting for <span class="mention">@oncall</span>`},
		{"button", blocks[1].Elements[0].Text.HTML, `<span class="emoji" title=":white_check_mark:">✅</span> Approve`},
		{"attachment title", atts[0].HTMLTitle, `<span class="emoji" title=":x:">❌</span> failed`},
		{"attachment text", atts[0].HTMLText, `<i>step</i> <code>restart</code>`},
		{"attachment field", atts[0].Fields[0].HTMLValue, `<span class="mention">@bob</span>`},
		{"reply", m.Replies[0].HTML, `<s>old</s> a &lt; b`},
		{"reactions", m.ReactionsHTML, `<span class="emoji" title=":eyes:">👀</span> 1`},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.where, c.got, c.want)
		}
	}
}

func TestPageScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	h := start(t, Options{})
	resp, err := http.Get(h.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	_, script, ok := strings.Cut(string(page), "<script>")
	script, _, ok2 := strings.Cut(script, "</script>")
	if !ok || !ok2 {
		t.Fatal("no <script> in the page")
	}
	file := filepath.Join(t.TempDir(), "page.js")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", file).CombinedOutput(); err != nil {
		t.Fatalf("the page's script does not parse: %v\n%s", err, out)
	}
}
