package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

func rejectModal() slack.ModalViewRequest {
	input := slack.NewInputBlock("reason", plain("Why?"), nil,
		slack.NewPlainTextInputBlockElement(plain("because…"), "reason_input"))
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: "reject", PrivateMetadata: "run-42",
		Title: plain("Reject run"), Submit: plain("Reject"), Close: plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{input}},
	}
}

func TestClickButtonOpenViewSubmit(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	_, ts, err := h.api.PostMessage(h.ops, slack.MsgOptionText("approve?", false), approvalBlocks())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.ClickButton(h.bob, h.ops, ts, "nope"); err == nil {
		t.Fatal("clicking a missing action_id must fail")
	}
	if err := h.srv.ClickButton(h.bob, h.ops, ts, "reject"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 {
		t.Fatalf("callback %+v", cb)
	}
	act := cb.ActionCallback.BlockActions[0]
	if act.ActionID != "reject" || act.Value != "run-42" || act.BlockID != "approval" || act.Type != "button" || act.Text.Text != "Reject" {
		t.Fatalf("action %+v", act)
	}
	if cb.User.ID != h.bob || cb.User.Name != "bob" || cb.Channel.ID != h.ops || cb.Channel.Name != "ops" ||
		cb.Container.MessageTs != ts || cb.Container.ChannelID != h.ops || cb.Message.Timestamp != ts ||
		cb.Message.Text != "approve?" || len(cb.Message.Blocks.BlockSet) != 3 || cb.TriggerID == "" ||
		!strings.HasPrefix(cb.ResponseURL, h.srv.URL()+"hooks/actions/") {
		t.Fatalf("callback %+v", cb)
	}
	if err := h.sm.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}

	// A button without a block_id in the posted JSON gets the stored, generated one.
	if err := h.srv.ClickButton(h.alice, h.ops, ts, "details"); err != nil {
		t.Fatal(err)
	}
	evt2 := h.waitEvent(socketmode.EventTypeInteractive)
	_ = h.sm.Ack(*evt2.Request)
	stored, _ := h.srv.Message(h.ops, ts)
	var blocks []map[string]any
	_ = json.Unmarshal(stored.Blocks, &blocks)
	if got := evt2.Data.(slack.InteractionCallback).ActionCallback.BlockActions[0].BlockID; got == "" || got != blocks[2]["block_id"] {
		t.Fatalf("generated block_id %q vs stored %v", got, blocks[2]["block_id"])
	}

	// The bot opens a modal with the click's trigger_id.
	resp, err := h.api.OpenView(cb.TriggerID, rejectModal())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "V") || resp.CallbackID != "reject" || resp.PrivateMetadata != "run-42" || resp.Hash == "" || resp.RootViewID != resp.ID {
		t.Fatalf("views.open %+v", resp.View)
	}
	_, err = h.api.OpenView(cb.TriggerID, rejectModal())
	wantErrCode(t, err, "exchanged_trigger_id")
	_, err = h.api.OpenView("1.2.abc", rejectModal())
	wantErrCode(t, err, "invalid_trigger_id")
	views := h.srv.Views()
	if len(views) != 1 || views[0].User != h.bob || !views[0].Open || views[0].Title != "Reject run" {
		t.Fatalf("views %+v", views)
	}

	// views.update with the hash; a stale hash conflicts.
	up := rejectModal()
	up.Title = plain("Reject run 42")
	updated, err := h.api.UpdateView(up, "", resp.Hash, resp.ID)
	if err != nil || updated.Title.Text != "Reject run 42" || updated.ID != resp.ID {
		t.Fatalf("views.update %v %+v", err, updated)
	}
	_, err = h.api.UpdateView(up, "", resp.Hash, resp.ID)
	wantErrCode(t, err, "hash_conflict")

	if err := h.srv.SubmitView(h.alice, resp.ID, nil); err == nil {
		t.Fatal("another user submitted bob's modal")
	}
	// Submit; the bot answers with field errors, then accepts.
	submit := func() slack.InteractionCallback {
		t.Helper()
		if err := h.srv.SubmitView(h.bob, resp.ID, map[string]map[string]string{"reason": {"reason_input": "not during peak"}}); err != nil {
			t.Fatal(err)
		}
		e := h.waitEvent(socketmode.EventTypeInteractive)
		vs := e.Data.(slack.InteractionCallback)
		if vs.Type != slack.InteractionTypeViewSubmission || vs.View.CallbackID != "reject" || vs.View.PrivateMetadata != "run-42" ||
			vs.View.State.Values["reason"]["reason_input"].Value != "not during peak" || vs.User.ID != h.bob || !e.Request.AcceptsResponsePayload {
			t.Fatalf("view_submission %+v", vs)
		}
		evt = e
		return vs
	}
	submit()
	if err := h.sm.Ack(*evt.Request, slack.NewErrorsViewSubmissionResponse(map[string]string{"reason": "too short"})); err != nil {
		t.Fatal(err)
	}
	h.waitFor("view errors", func() bool { v, _ := h.srv.View(resp.ID); return v.Open && v.Errors["reason"] == "too short" })
	submit()
	if err := h.sm.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}
	h.waitFor("view closed", func() bool { v, _ := h.srv.View(resp.ID); return !v.Open })
	if err := h.srv.SubmitView(h.bob, resp.ID, nil); err == nil {
		t.Fatal("submitting a closed view must fail")
	}
}

func TestTriggerExpires(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	h.connect()
	if err := h.srv.SlashCommand(h.alice, h.ops, "x"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	_ = h.sm.Ack(*evt.Request)
	clk.Advance(4 * time.Second)
	_, err := h.api.OpenView(evt.Data.(slack.SlashCommand).TriggerID, rejectModal())
	wantErrCode(t, err, "expired_trigger_id")
}

func TestInvalidView(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	if err := h.srv.SlashCommand(h.alice, h.ops, "x"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	_ = h.sm.Ack(*evt.Request)
	v := rejectModal()
	v.Title = plain(strings.Repeat("t", 25))
	_, err := h.api.OpenView(evt.Data.(slack.SlashCommand).TriggerID, v)
	wantErrCode(t, err, "invalid_arguments")
	if msgs := slackErr(t, err).ResponseMetadata.Messages; len(msgs) == 0 || !strings.Contains(msgs[0], "/view/title") {
		t.Fatalf("messages %v", msgs)
	}
}

func TestResponseURLReplaceOriginalAndEphemeralButtons(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	// Buttons in an ephemeral message are clickable by the user who sees it.
	mts, err := h.api.PostEphemeral(h.ops, h.alice, slack.MsgOptionText("confirm?", false), approvalBlocks())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.ClickButton(h.alice, h.ops, mts, "approve"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	_ = h.sm.Ack(*evt.Request)
	if !cb.Container.IsEphemeral || cb.ActionCallback.BlockActions[0].Value != "run-42" {
		t.Fatalf("ephemeral click %+v", cb.Container)
	}
	if err := slack.PostWebhook(cb.ResponseURL, &slack.WebhookMessage{ReplaceOriginal: true, Text: "approved ✓"}); err != nil {
		t.Fatal(err)
	}
	if e := h.srv.Ephemerals(h.alice); len(e) != 1 || e[0].Text != "approved ✓" || len(e[0].Blocks) != 0 {
		t.Fatalf("ephemerals %+v", e)
	}

	// replace_original on a channel message edits it.
	_, ts, _ := h.api.PostMessage(h.ops, slack.MsgOptionText("approve?", false), approvalBlocks())
	if err := h.srv.ClickButton(h.bob, h.ops, ts, "approve"); err != nil {
		t.Fatal(err)
	}
	evt = h.waitEvent(socketmode.EventTypeInteractive)
	_ = h.sm.Ack(*evt.Request)
	url := evt.Data.(slack.InteractionCallback).ResponseURL
	if err := slack.PostWebhook(url, &slack.WebhookMessage{ReplaceOriginal: true, Text: "approved by bob"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := h.srv.Message(h.ops, ts); m.Text != "approved by bob" || m.Edits != 1 {
		t.Fatalf("replaced %+v", m)
	}
	if err := slack.PostWebhook(url, &slack.WebhookMessage{DeleteOriginal: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.srv.Message(h.ops, ts); ok {
		t.Fatal("delete_original did not delete")
	}
}

func TestSubmitViewSelectShapes(t *testing.T) {
	h := start(t, Options{})
	h.connect()
	if err := h.srv.SlashCommand(h.alice, h.ops, "x"); err != nil {
		t.Fatal(err)
	}
	evt := h.waitEvent(socketmode.EventTypeSlashCommand)
	_ = h.sm.Ack(*evt.Request)
	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("env"), "env_sel",
		slack.NewOptionBlockObject("prod", plain("Production"), nil),
		slack.NewOptionBlockObject("stage", plain("Staging"), nil))
	v := rejectModal()
	v.Blocks.BlockSet = append(v.Blocks.BlockSet, slack.NewInputBlock("env", plain("Env"), nil, sel))
	resp, err := h.api.OpenView(evt.Data.(slack.SlashCommand).TriggerID, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.SubmitView(h.alice, resp.ID, map[string]map[string]string{"env": {"env_sel": "stage"}}); err != nil {
		t.Fatal(err)
	}
	evt = h.waitEvent(socketmode.EventTypeInteractive)
	_ = h.sm.Ack(*evt.Request, slack.NewClearViewSubmissionResponse())
	vals := evt.Data.(slack.InteractionCallback).View.State.Values
	if o := vals["env"]["env_sel"].SelectedOption; o.Value != "stage" || o.Text.Text != "Staging" {
		t.Fatalf("selected option %+v", o)
	}
	if r, ok := vals["reason"]["reason_input"]; !ok || r.Value != "" || r.Type != "plain_text_input" {
		t.Fatalf("unfilled input %+v %v", r, ok)
	}
	h.waitFor("cleared", func() bool { v, _ := h.srv.View(resp.ID); return !v.Open })
}

func TestResponseURLBudget(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	h.connect()
	post := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"text":"update"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error
	}
	command := func() string {
		t.Helper()
		if err := h.srv.SlashCommand(h.alice, h.ops, "status"); err != nil {
			t.Fatal(err)
		}
		evt := h.waitEvent(socketmode.EventTypeSlashCommand)
		_ = h.sm.Ack(*evt.Request)
		return evt.Data.(slack.SlashCommand).ResponseURL
	}

	// Five uses, spread over 20 minutes, then it is used up.
	url := command()
	for i := range 5 {
		if code, e := post(url); code != http.StatusOK {
			t.Fatalf("use %d: %d %s", i+1, code, e)
		}
		clk.Advance(5 * time.Minute)
	}
	if code, e := post(url); code != http.StatusNotFound || e != "used_url" {
		t.Fatalf("6th use: %d %q, want 404 used_url", code, e)
	}
	if n := len(h.srv.Ephemerals(h.alice)); n != 5 {
		t.Fatalf("%d replies shown, want 5", n)
	}

	// Unused, but older than 30 minutes.
	url = command()
	clk.Advance(30*time.Minute + time.Second)
	if code, e := post(url); code != http.StatusNotFound || e != "expired_url" {
		t.Fatalf("after 30 minutes: %d %q, want 404 expired_url", code, e)
	}
}
