package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

func TestPostUpdateEphemeralRoundTrip(t *testing.T) {
	h := start(t, Options{})
	api := h.api

	auth, err := api.AuthTest()
	if err != nil {
		t.Fatal(err)
	}
	if auth.UserID != "U0BOTUSER01" || auth.BotID != "B0BOTAPP001" || auth.TeamID != "T0EMULATOR" {
		t.Fatalf("auth.test %+v", auth)
	}

	ch, ts, err := api.PostMessage("#ops", slack.MsgOptionText("approve?", false), approvalBlocks())
	if err != nil {
		t.Fatal(err)
	}
	if ch != h.ops || !tsRE.MatchString(ts) {
		t.Fatalf("channel %q ts %q", ch, ts)
	}
	m, ok := h.srv.Message(h.ops, ts)
	if !ok || m.Text != "approve?" || m.BotID != "B0BOTAPP001" || m.User != "U0BOTUSER01" {
		t.Fatalf("stored %+v", m)
	}
	var blocks []map[string]any
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil || len(blocks) != 3 {
		t.Fatalf("blocks %s", m.Blocks)
	}
	if id, _ := blocks[0]["block_id"].(string); id == "" {
		t.Fatal("missing block_id was not filled in")
	}
	if blocks[1]["block_id"] != "approval" {
		t.Fatalf("block_id changed: %v", blocks[1]["block_id"])
	}

	// Threads: a reply to a reply lands under the root; ts strictly increase.
	_, r1, err := api.PostMessage("ops", slack.MsgOptionText("step 1", false), slack.MsgOptionTS(ts))
	if err != nil {
		t.Fatal(err)
	}
	_, r2, err := api.PostMessage(h.ops, slack.MsgOptionText("step 2", false), slack.MsgOptionTS(r1))
	if err != nil {
		t.Fatal(err)
	}
	if !(ts < r1 && r1 < r2) {
		t.Fatalf("ts not increasing: %s %s %s", ts, r1, r2)
	}
	if reps := h.srv.Replies(h.ops, ts); len(reps) != 2 || reps[1].ThreadTS != ts {
		t.Fatalf("replies %+v", reps)
	}
	if len(h.srv.Messages(h.ops)) != 1 || len(h.srv.AllMessages(h.ops)) != 3 {
		t.Fatal("Messages must list roots only")
	}
	if root, _ := h.srv.Message(h.ops, ts); len(root.Replies) != 2 {
		t.Fatalf("root replies %v", root.Replies)
	}
	replies, _, _, err := api.GetConversationReplies(&slack.GetConversationRepliesParameters{ChannelID: h.ops, Timestamp: ts})
	if err != nil || len(replies) != 3 || replies[0].ReplyCount != 2 {
		t.Fatalf("conversations.replies %v %+v", err, replies)
	}

	_, _, text, err := api.UpdateMessage(h.ops, ts, slack.MsgOptionText("approved", false), slack.MsgOptionBlocks())
	if err != nil || text != "approved" {
		t.Fatalf("update: %v %q", err, text)
	}
	if m, _ := h.srv.Message(h.ops, ts); m.Edits != 1 || m.Text != "approved" || len(m.History) != 1 || m.History[0].Text != "approve?" {
		t.Fatalf("after update %+v", m)
	}

	mts, err := api.PostEphemeral(h.ops, h.alice, slack.MsgOptionText("only you", false))
	if err != nil || !tsRE.MatchString(mts) {
		t.Fatalf("ephemeral %q %v", mts, err)
	}
	if e := h.srv.Ephemerals(h.alice); len(e) != 1 || e[0].Text != "only you" || e[0].TS != mts {
		t.Fatalf("ephemerals %+v", e)
	}

	if err := api.AddReaction("eyes", slack.NewRefToMessage(h.ops, ts)); err != nil {
		t.Fatal(err)
	}
	wantErrCode(t, api.AddReaction("eyes", slack.NewRefToMessage(h.ops, ts)), "already_reacted")
	link, err := api.GetPermalink(&slack.PermalinkParameters{Channel: h.ops, Ts: ts})
	if err != nil || !strings.HasSuffix(link, "/archives/"+h.ops+"/p"+strings.Replace(ts, ".", "", 1)) {
		t.Fatalf("permalink %q %v", link, err)
	}
}

func TestLookups(t *testing.T) {
	h := start(t, Options{})
	gid := h.srv.AddUserGroup(UserGroup{Handle: "oncall", Members: []string{h.alice, h.bob}})
	u, err := h.api.GetUserInfo(h.alice)
	if err != nil || u.Name != "alice" || u.RealName != "Alice Example" || u.Profile.Email != "alice@example.com" || u.IsBot {
		t.Fatalf("users.info %+v %v", u, err)
	}
	if bot, err := h.api.GetUserInfo("U0BOTUSER01"); err != nil || !bot.IsBot {
		t.Fatalf("bot user %+v %v", bot, err)
	}
	_, err = h.api.GetUserInfo("U404")
	wantErrCode(t, err, "user_not_found")
	members, err := h.api.GetUserGroupMembers(gid)
	if err != nil || len(members) != 2 || members[0] != h.alice {
		t.Fatalf("usergroups.users.list %v %v", members, err)
	}
	_, err = h.api.GetUserGroupMembers("S404")
	wantErrCode(t, err, "no_such_subteam")
	groups, err := h.api.GetUserGroups(slack.GetUserGroupsOptionIncludeUsers(true))
	if err != nil || len(groups) != 1 || groups[0].Handle != "oncall" || len(groups[0].Users) != 2 {
		t.Fatalf("usergroups.list %+v %v", groups, err)
	}
	c, err := h.api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: h.ops})
	if err != nil || c.Name != "ops" || c.ID != h.ops || !c.IsChannel {
		t.Fatalf("conversations.info %+v %v", c, err)
	}
	_, err = h.api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: "C404"})
	wantErrCode(t, err, "channel_not_found")
	h.srv.DMChannelID(h.alice) // a DM is not a public channel
	chans, next, err := h.api.GetConversations(&slack.GetConversationsParameters{ExcludeArchived: true, Limit: 200})
	if err != nil || next != "" || len(chans) != 1 || chans[0].ID != h.ops || chans[0].Name != "ops" {
		t.Fatalf("conversations.list %+v %q %v", chans, next, err)
	}
	if h.srv.ChannelID("#ops") != h.ops || h.srv.ChannelID("ops") != h.ops || h.srv.ChannelID(h.ops) != h.ops || h.srv.ChannelID("nope") != "" {
		t.Fatal("ChannelID resolution")
	}
}

func TestMessageErrors(t *testing.T) {
	h := start(t, Options{RateLimit: RateLimitOptions{Disabled: true}})
	api := h.api
	_, _, err := api.PostMessage("#nope", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "channel_not_found")
	_, _, err = api.PostMessage(h.ops)
	wantErrCode(t, err, "no_text")
	_, _, err = api.PostMessage(h.ops, slack.MsgOptionText(strings.Repeat("a", 40001), false))
	wantErrCode(t, err, "msg_too_long")
	_, _, _, err = api.UpdateMessage(h.ops, "1700000000.000001", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "message_not_found")
	human, _ := h.srv.PostMessage(h.alice, h.ops, "mine")
	_, _, _, err = api.UpdateMessage(h.ops, human, slack.MsgOptionText("x", false))
	wantErrCode(t, err, "cant_update_message")
	_, _, err = api.PostMessage(h.ops, slack.MsgOptionText("x", false), slack.MsgOptionTS("1.000000"))
	wantErrCode(t, err, "thread_not_found")
}

func TestBlockValidation(t *testing.T) {
	h := start(t, Options{RateLimit: RateLimitOptions{Disabled: true}})
	post := func(blocks ...slack.Block) error {
		_, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("fallback", false), slack.MsgOptionBlocks(blocks...))
		return err
	}
	many := make([]slack.Block, 51)
	for i := range many {
		many[i] = slack.NewDividerBlock()
	}
	err := post(many...)
	wantErrCode(t, err, "invalid_blocks")
	if msgs := slackErr(t, err).ResponseMetadata.Messages; len(msgs) != 1 || !strings.Contains(msgs[0], "no more than 50 items allowed [json-pointer:/blocks]") {
		t.Fatalf("messages %v", msgs)
	}
	if err := post(many[:50]...); err != nil {
		t.Fatalf("50 blocks rejected: %v", err)
	}

	err = post(slack.NewSectionBlock(mrkdwn(strings.Repeat("x", 3001)), nil, nil))
	wantErrCode(t, err, "invalid_blocks")
	if msgs := slackErr(t, err).ResponseMetadata.Messages; len(msgs) != 1 || msgs[0] != "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]" {
		t.Fatalf("messages %v", msgs)
	}
	if err := post(slack.NewSectionBlock(mrkdwn(strings.Repeat("x", 3000)), nil, nil)); err != nil {
		t.Fatalf("3000 chars rejected: %v", err)
	}

	btn := slack.NewButtonBlockElement("go", strings.Repeat("v", 2001), plain("Go"))
	err = post(slack.NewActionBlock("a", btn))
	wantErrCode(t, err, "invalid_blocks")
	if msgs := slackErr(t, err).ResponseMetadata.Messages; !strings.Contains(msgs[0], "/blocks/0/elements/0/value") {
		t.Fatalf("messages %v", msgs)
	}
	wantErrCode(t, post(slack.NewActionBlock("a", slack.NewButtonBlockElement(strings.Repeat("i", 256), "v", plain("Go")))), "invalid_blocks")
	wantErrCode(t, post(slack.NewActionBlock(strings.Repeat("b", 256), slack.NewButtonBlockElement("go", "v", plain("Go")))), "invalid_blocks")
	wantErrCode(t, post(slack.NewActionBlock("a", slack.NewButtonBlockElement("go", "v", nil))), "invalid_blocks")
	wantErrCode(t, post(slack.NewSectionBlock(nil, nil, nil)), "invalid_blocks")
	wantErrCode(t, post(slack.NewDividerBlock(), slack.NewActionBlock("dup", slack.NewButtonBlockElement("a", "v", plain("A"))),
		slack.NewActionBlock("dup", slack.NewButtonBlockElement("b", "v", plain("B")))), "invalid_blocks")
	if n := len(h.srv.Messages(h.ops)); n != 2 {
		t.Fatalf("stored %d messages, want only the 2 valid ones", n)
	}
}

func TestAuthErrors(t *testing.T) {
	h := start(t, Options{})
	bad := slack.New("xoxb-wrong", slack.OptionAPIURL(h.srv.APIURL()))
	_, err := bad.AuthTest()
	wantErrCode(t, err, "invalid_auth")
	_, _, err = bad.PostMessage(h.ops, slack.MsgOptionText("x", false))
	wantErrCode(t, err, "invalid_auth")
	_, err = slack.New("", slack.OptionAPIURL(h.srv.APIURL())).AuthTest()
	wantErrCode(t, err, "not_authed")
	_, err = slack.New(h.srv.AppToken(), slack.OptionAPIURL(h.srv.APIURL())).AuthTest()
	wantErrCode(t, err, "not_allowed_token_type")
	if h.srv.Calls("auth.test") != 3 || h.srv.Calls("chat.postMessage") != 1 {
		t.Fatalf("calls %d %d", h.srv.Calls("auth.test"), h.srv.Calls("chat.postMessage"))
	}
}

// TestJSONBearerBody checks the other wire format: a JSON body with a Bearer
// header (Alertmanager app_token mode), blocks as a real array.
func TestJSONBearerBody(t *testing.T) {
	h := start(t, Options{})
	do := func(method, token, body string) map[string]any {
		req, _ := http.NewRequest(http.MethodPost, h.srv.APIURL()+method, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %s", method, raw)
		}
		return out
	}
	out := do("chat.postMessage", h.srv.BotToken(), `{"channel":"#ops","text":"","attachments":[{"color":"danger","title":"[FIRING:1] HighCPU"}],"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"hi"}}]}`)
	if out["ok"] != true || out["channel"] != h.ops {
		t.Fatalf("json post %v", out)
	}
	m := h.srv.Messages(h.ops)[0]
	if !strings.Contains(string(m.Attachments), `"color":"a30200"`) || !strings.Contains(string(m.Attachments), `"id":1`) {
		t.Fatalf("attachments %s", m.Attachments)
	}
	if out := do("chat.postMessage", "", `{"channel":"#ops","text":"x","token":"`+h.srv.BotToken()+`"}`); out["error"] != "not_authed" {
		t.Fatalf("JSON body token without header: %v", out)
	}
	if out := do("no.such.method", h.srv.BotToken(), `{}`); out["error"] != "unknown_method" {
		t.Fatalf("unknown method: %v", out)
	}
	// GET with query parameters, as slack-go does for chat.getPermalink.
	resp, err := http.Get(h.srv.APIURL() + "conversations.info?" + url.Values{"token": {h.srv.BotToken()}, "channel": {"ops"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(raw), `"ok":true`) {
		t.Fatalf("GET conversations.info: %s", raw)
	}
}

func TestDirectMessages(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	ch, ts, err := h.api.PostMessage(h.alice, slack.MsgOptionText("please approve", false))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ch, "D") || ch != h.srv.DMChannelID(h.alice) {
		t.Fatalf("DM channel %q", ch)
	}
	opened, _, _, err := h.api.OpenConversation(&slack.OpenConversationParameters{Users: []string{h.alice}})
	if err != nil || opened.ID != ch {
		t.Fatalf("conversations.open %v %+v", err, opened)
	}
	info, err := h.api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: ch})
	if err != nil || !info.IsIM || info.User != h.alice {
		t.Fatalf("DM info %v %+v", err, info)
	}
	if _, err := h.srv.PostReply(h.alice, ch, ts, "ok"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeEventsAPI)
	_ = h.sm.Ack(*evt.Request)
	msg := evt.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.ChannelType != "im" || msg.Channel != ch || msg.ThreadTimeStamp != ts || msg.ClientMsgID == "" {
		t.Fatalf("DM event %+v", msg)
	}
}

// Edits carry the time they were applied (on the injected clock): the
// message's Edited, each replaced version's Replaced, and the wire's
// edited.ts that slack-go reads.
func TestEditsAreTimestamped(t *testing.T) {
	clock := newFakeClock()
	h := start(t, Options{Now: clock.Now})
	_, ts, err := h.api.PostMessage(h.ops, slack.MsgOptionText("v1", false))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := h.srv.Message(h.ops, ts); !m.Edited.IsZero() {
		t.Fatalf("a message never edited has Edited %s", m.Edited)
	}
	var at []time.Time
	for _, text := range []string{"v2", "v3"} {
		clock.Advance(1500 * time.Millisecond)
		at = append(at, clock.Now())
		if _, _, _, err := h.api.UpdateMessage(h.ops, ts, slack.MsgOptionText(text, false)); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := h.srv.Message(h.ops, ts)
	if !m.Edited.Equal(at[1]) {
		t.Errorf("Edited = %s, want %s", m.Edited, at[1])
	}
	if len(m.History) != 2 || !m.History[0].Replaced.Equal(at[0]) || !m.History[1].Replaced.Equal(at[1]) || m.History[0].Text != "v1" {
		t.Errorf("history = %+v, want v1 replaced at %s, v2 at %s", m.History, at[0], at[1])
	}
	hist, err := h.api.GetConversationHistory(&slack.GetConversationHistoryParameters{ChannelID: h.ops})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.Messages) != 1 || hist.Messages[0].Edited == nil || hist.Messages[0].Edited.Timestamp != fmt.Sprintf("%d.%06d", at[1].Unix(), at[1].Nanosecond()/1000) {
		t.Errorf("wire edited = %+v", hist.Messages[0].Edited)
	}
}
