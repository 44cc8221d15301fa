package emulator

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func TestSlashCommandDeferThenEdit(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	cmds := h.registerRunbook()
	if len(cmds) != 1 || cmds[0].ID == "" || cmds[0].ApplicationID != h.srv.ApplicationID() || cmds[0].GuildID != h.srv.GuildID() {
		t.Fatalf("registered = %+v", cmds[0])
	}

	id, err := h.srv.RunCommand("alice", "#ops", `/runbook run name:restart-web params:"service=web env=prod"`)
	if err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	if ic.ID != id || ic.Type != discordgo.InteractionApplicationCommand || ic.AppID != h.srv.ApplicationID() {
		t.Fatalf("interaction = %+v", ic.Interaction)
	}
	if ic.Member == nil || ic.Member.User.ID != h.alice || ic.AppPermissions == 0 || ic.GuildID != h.srv.GuildID() || ic.ChannelID != h.ops {
		t.Fatalf("member %+v perms %d guild %q channel %q", ic.Member, ic.AppPermissions, ic.GuildID, ic.ChannelID)
	}
	data := ic.ApplicationCommandData()
	sub := data.Options[0]
	if data.Name != "runbook" || sub.Name != "run" || sub.Type != discordgo.ApplicationCommandOptionSubCommand ||
		sub.Options[0].StringValue() != "restart-web" || sub.Options[1].StringValue() != "service=web env=prod" {
		t.Fatalf("data = %+v sub = %+v", data, sub)
	}

	if err := h.dg.InteractionRespond(ic.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource}); err != nil {
		t.Fatal(err)
	}
	msgs := h.srv.Messages("ops")
	if len(msgs) != 1 || msgs[0].Flags&FlagLoading == 0 || msgs[0].Type != 20 || msgs[0].InteractionID != id {
		t.Fatalf("after defer: %+v", msgs)
	}
	m, err := h.dg.InteractionResponseEdit(ic.Interaction, &discordgo.WebhookEdit{Content: strptr("restart-web started")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := h.srv.Message(m.ID)
	if got.Content != "restart-web started" || got.Edits != 1 || got.Flags&FlagLoading != 0 || m.ID != msgs[0].ID {
		t.Fatalf("after edit: %+v", got)
	}
	in, _ := h.srv.Interaction(id)
	if !in.Acked || in.ResponseType != 5 || in.Failed || in.AckLatency <= 0 || in.OriginalID != m.ID {
		t.Fatalf("interaction state = %+v", in)
	}
	if n := len(h.srv.AckLatencies()); n != 1 {
		t.Fatalf("AckLatencies has %d entries", n)
	}
	// GET and DELETE @original.
	orig, err := h.dg.InteractionResponse(ic.Interaction)
	if err != nil || orig.Content != "restart-web started" {
		t.Fatalf("GET @original = %+v, %v", orig, err)
	}
	if err := h.dg.InteractionResponseDelete(ic.Interaction); err != nil {
		t.Fatal(err)
	}
	if n := len(h.srv.Messages("ops")); n != 0 {
		t.Fatalf("%d messages after deleting @original", n)
	}
}

func TestSlashCommandOptionsChecked(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	h.registerRunbook()
	for _, tc := range []struct{ name, line, want string }{
		{"unknown command", "/deploy now", "no command /deploy"},
		{"missing sub-command", "/runbook", "choose a sub-command"},
		{"unknown sub-command", "/runbook explode", "unknown sub-command"},
		{"missing required", "/runbook run params:x", `missing required option "name"`},
		{"not an integer", "/runbook status id:abc", "not an integer"},
		{"below min_value", "/runbook status id:0", "out of range"},
		{"unknown user", "/runbook cancel owner:nobody", "no user"},
		{"unknown option", "/runbook run name:x color:red", "unknown option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.srv.RunCommand("alice", "ops", tc.line)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := h.srv.RunCommand("alice", "ops", "/runbook cancel owner:bob"); err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	opt := ic.ApplicationCommandData().Options[0].Options[0]
	if u := opt.UserValue(nil); u.ID != h.bob {
		t.Fatalf("user option = %+v", u)
	}
	if r := ic.ApplicationCommandData().Resolved; r == nil || r.Users[h.bob] == nil || r.Users[h.bob].Username != "bob" {
		t.Fatalf("resolved = %+v", r)
	}
}

func TestInteractionDeadline(t *testing.T) {
	h := start(t, Options{InteractionTimeout: 300 * time.Millisecond})
	h.connect(botIntents)
	h.registerRunbook()

	id, err := h.srv.RunCommand("alice", "ops", "/runbook status id:7")
	if err != nil {
		t.Fatal(err)
	}
	late := h.interaction()
	h.waitFor("the interaction to fail", func() bool { in, _ := h.srv.Interaction(id); return in.Failed })
	err = h.dg.InteractionRespond(late.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "too late"}})
	restErr(t, err, 404, 10062)
	// A failed interaction has no webhook either.
	_, err = h.dg.FollowupMessageCreate(late.Interaction, true, &discordgo.WebhookParams{Content: "still too late"})
	restErr(t, err, 404, 10015)

	// Answered in time: the first callback wins, a second is refused.
	if _, err := h.srv.RunCommand("alice", "ops", "/runbook status id:8"); err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	answer := &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "execution 8: running"}}
	if err := h.dg.InteractionRespond(ic.Interaction, answer); err != nil {
		t.Fatal(err)
	}
	restErr(t, h.dg.InteractionRespond(ic.Interaction, answer), 400, 40060)
	if in, _ := h.srv.Interaction(ic.ID); in.Failed || !in.Acked || in.Rejected != 1 {
		t.Fatalf("state = %+v", in)
	}
}

func TestFollowupTokenLivesFifteenMinutes(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	h.connect(botIntents)
	h.registerRunbook()
	if _, err := h.srv.RunCommand("alice", "ops", "/runbook status id:1"); err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	if err := h.dg.InteractionRespond(ic.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "on it", Flags: discordgo.MessageFlagsEphemeral}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(14 * time.Minute)
	f, err := h.dg.FollowupMessageCreate(ic.Interaction, true, &discordgo.WebhookParams{Content: "step 1 done"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.dg.FollowupMessageEdit(ic.Interaction, f.ID, &discordgo.WebhookEdit{Content: strptr("step 1 done (3s)")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute + time.Second)
	_, err = h.dg.FollowupMessageCreate(ic.Interaction, true, &discordgo.WebhookParams{Content: "step 2 done"})
	restErr(t, err, 401, 50027)
	_, err = h.dg.InteractionResponseEdit(ic.Interaction, &discordgo.WebhookEdit{Content: strptr("x")})
	restErr(t, err, 401, 50027)

	eph := h.srv.Ephemerals(h.alice)
	if len(eph) != 1 || eph[0].Content != "on it" || !eph[0].Ephemeral() {
		t.Fatalf("ephemerals = %+v", eph)
	}
	msgs := h.srv.Messages("ops")
	if len(msgs) != 1 || msgs[0].Content != "step 1 done (3s)" || msgs[0].Edits != 1 {
		t.Fatalf("channel = %+v", msgs)
	}
}

func TestButtonModalAndUpdate(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	card, err := h.dg.ChannelMessageSendComplex(h.ops, &discordgo.MessageSend{Content: "Approve run 42?", Components: approvalComponents()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.ClickButton("bob", card.ID, "approve:43"); err == nil {
		t.Fatal("clicked a button that does not exist")
	}
	if _, err := h.srv.ClickButton("bob", card.ID, "reject:42"); err != nil {
		t.Fatal(err)
	}
	click := h.interaction()
	cd := click.MessageComponentData()
	if click.Type != discordgo.InteractionMessageComponent || cd.CustomID != "reject:42" || cd.ComponentType != discordgo.ButtonComponent ||
		click.Message == nil || click.Message.ID != card.ID || click.Member.User.ID != h.bob {
		t.Fatalf("click = %+v data %+v", click.Interaction, cd)
	}
	err = h.dg.InteractionRespond(click.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseModal,
		Data: &discordgo.InteractionResponseData{CustomID: "reject-modal:42", Title: "Reject run 42",
			Components: []discordgo.MessageComponent{discordgo.ActionsRow{Components: []discordgo.MessageComponent{
				discordgo.TextInput{CustomID: "reason", Label: "Reason", Style: discordgo.TextInputParagraph, Required: true, MinLength: 3},
			}}}}})
	if err != nil {
		t.Fatal(err)
	}
	md, ok := h.srv.OpenModal(h.bob)
	if !ok || md.CustomID != "reject-modal:42" || md.Title != "Reject run 42" || md.MessageID != card.ID {
		t.Fatalf("modal = %+v, %v", md, ok)
	}
	if _, err := h.srv.SubmitModal("bob", md.ID, map[string]string{"reason": ""}); err == nil {
		t.Fatal("submitted an empty required input")
	}
	if _, err := h.srv.SubmitModal("bob", md.ID, map[string]string{"reason": "not during peak"}); err != nil {
		t.Fatal(err)
	}
	sub := h.interaction()
	ms := sub.ModalSubmitData()
	row, ok := ms.Components[0].(*discordgo.ActionsRow)
	if !ok || ms.CustomID != "reject-modal:42" || row.Components[0].(*discordgo.TextInput).Value != "not during peak" || sub.Message == nil {
		t.Fatalf("modal submit = %+v", ms)
	}
	if _, still := h.srv.OpenModal(h.bob); still {
		t.Fatal("modal still open after submit")
	}
	// Update the card: new text, no buttons.
	err = h.dg.InteractionRespond(sub.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseUpdateMessage,
		Data: &discordgo.InteractionResponseData{Content: "Rejected by bob: not during peak", Components: []discordgo.MessageComponent{}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := h.srv.Message(card.ID)
	if got.Content != "Rejected by bob: not during peak" || !isEmptyJSON(got.Components) || got.Edits != 1 || got.History[0].Content != "Approve run 42?" {
		t.Fatalf("card = %+v", got)
	}
	upd := next[*discordgo.MessageUpdate](h)
	if upd.ID != card.ID || upd.Content != got.Content {
		t.Fatalf("MESSAGE_UPDATE = %+v", upd.Message)
	}
	// A stale click on the old card no longer finds the button.
	if _, err := h.srv.ClickButton("alice", card.ID, "approve:42"); err == nil {
		t.Fatal("clicked a removed button")
	}
}

func TestEphemeralButtonsAndDeferredUpdate(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	h.registerRunbook()
	if _, err := h.srv.RunCommand("alice", "ops", "/runbook status id:3"); err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	err := h.dg.InteractionRespond(ic.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "Cancel execution 3?", Flags: discordgo.MessageFlagsEphemeral,
			Components: []discordgo.MessageComponent{discordgo.ActionsRow{Components: []discordgo.MessageComponent{
				discordgo.Button{Label: "Cancel it", Style: discordgo.DangerButton, CustomID: "cancel:3"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	eph := h.srv.Ephemerals(h.alice)
	if len(eph) != 1 || len(h.srv.Messages("ops")) != 0 || len(h.srv.Ephemerals(h.bob)) != 0 {
		t.Fatalf("ephemerals %+v, channel %d", eph, len(h.srv.Messages("ops")))
	}
	if _, err := h.srv.ClickButton("bob", eph[0].ID, "cancel:3"); err == nil {
		t.Fatal("bob clicked alice's ephemeral message")
	}
	if _, err := h.srv.ClickButton("alice", eph[0].ID, "cancel:3"); err != nil {
		t.Fatal(err)
	}
	click := h.interaction()
	if click.Message == nil || click.Message.Flags&discordgo.MessageFlagsEphemeral == 0 {
		t.Fatalf("click message = %+v", click.Message)
	}
	if err := h.dg.InteractionRespond(click.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}); err != nil {
		t.Fatal(err)
	}
	// After a deferred update, @original is the message the button is on.
	if _, err := h.dg.InteractionResponseEdit(click.Interaction, &discordgo.WebhookEdit{Content: strptr("Cancelled."), Components: &[]discordgo.MessageComponent{}}); err != nil {
		t.Fatal(err)
	}
	eph = h.srv.Ephemerals(h.alice)
	if len(eph) != 1 || eph[0].Content != "Cancelled." || eph[0].Edits != 1 || !isEmptyJSON(eph[0].Components) {
		t.Fatalf("ephemeral after update = %+v", eph)
	}
}

func TestAutocomplete(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	h.registerRunbook()
	if _, err := h.srv.Autocomplete("alice", "ops", "/runbook run name:rest", "params"); err == nil {
		t.Fatal("autocomplete on an option without autocomplete")
	}
	id, err := h.srv.Autocomplete("alice", "ops", "/runbook run name:rest", "name")
	if err != nil {
		t.Fatal(err)
	}
	ac := h.interaction()
	opts := ac.ApplicationCommandData().Options[0].Options
	if ac.Type != discordgo.InteractionApplicationCommandAutocomplete || !opts[0].Focused || opts[0].StringValue() != "rest" {
		t.Fatalf("autocomplete = %+v", opts[0])
	}
	restErr(t, h.dg.InteractionRespond(ac.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "no"}}), 400, 50035)
	err = h.dg.InteractionRespond(ac.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionApplicationCommandAutocompleteResult,
		Data: &discordgo.InteractionResponseData{Choices: []*discordgo.ApplicationCommandOptionChoice{
			{Name: "restart-web", Value: "restart-web"}, {Name: "restore-db", Value: "restore-db"}}}})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := h.srv.Interaction(id)
	var choices []CommandChoice
	_ = json.Unmarshal(in.Choices, &choices)
	if len(choices) != 2 || choices[0].Value != "restart-web" {
		t.Fatalf("choices = %s", in.Choices)
	}
}

func TestCallbackValidation(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	h.registerRunbook()
	if _, err := h.srv.RunCommand("alice", "ops", "/runbook status id:5"); err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	long := func(n int) string { return strings.Repeat("x", n) }
	row := func(cs ...discordgo.MessageComponent) []discordgo.MessageComponent {
		return []discordgo.MessageComponent{discordgo.ActionsRow{Components: cs}}
	}
	msg := func(d discordgo.InteractionResponseData) *discordgo.InteractionResponse {
		return &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource, Data: &d}
	}
	for _, tc := range []struct {
		name string
		resp *discordgo.InteractionResponse
		path string // where Discord reports the error
	}{
		{"content over 2000", msg(discordgo.InteractionResponseData{Content: long(2001)}), "data.content"},
		{"update on a slash command", &discordgo.InteractionResponse{Type: discordgo.InteractionResponseUpdateMessage,
			Data: &discordgo.InteractionResponseData{Content: "x"}}, "type"},
		{"custom_id over 100", msg(discordgo.InteractionResponseData{Content: "x", Components: row(
			discordgo.Button{Label: "Go", Style: discordgo.PrimaryButton, CustomID: long(101)})}), "data.components.0.components.0.custom_id"},
		{"button label over 80", msg(discordgo.InteractionResponseData{Content: "x", Components: row(
			discordgo.Button{Label: long(81), Style: discordgo.PrimaryButton, CustomID: "a"})}), "data.components.0.components.0.label"},
		{"six buttons in a row", msg(discordgo.InteractionResponseData{Content: "x", Components: row(
			discordgo.Button{Label: "1", CustomID: "1"}, discordgo.Button{Label: "2", CustomID: "2"}, discordgo.Button{Label: "3", CustomID: "3"},
			discordgo.Button{Label: "4", CustomID: "4"}, discordgo.Button{Label: "5", CustomID: "5"}, discordgo.Button{Label: "6", CustomID: "6"})}),
			"data.components.0.components"},
		{"modal title over 45", &discordgo.InteractionResponse{Type: discordgo.InteractionResponseModal, Data: &discordgo.InteractionResponseData{
			CustomID: "m", Title: long(46), Components: row(discordgo.TextInput{CustomID: "r", Label: "R", Style: discordgo.TextInputShort})}}, "data.title"},
		{"modal without inputs", &discordgo.InteractionResponse{Type: discordgo.InteractionResponseModal, Data: &discordgo.InteractionResponseData{
			CustomID: "m", Title: "T"}}, "data.components"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := restErr(t, h.dg.InteractionRespond(ic.Interaction, tc.resp), 400, 50035)
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
	// Refused callbacks do not acknowledge: a valid one still works.
	if err := h.dg.InteractionRespond(ic.Interaction, msg(discordgo.InteractionResponseData{Content: "ok"})); err != nil {
		t.Fatal(err)
	}
}

func TestSelectMenu(t *testing.T) {
	h := start(t, Options{})
	h.connect(botIntents)
	zero := 0
	m, err := h.dg.ChannelMessageSendComplex(h.ops, &discordgo.MessageSend{Content: "Pick environments",
		Components: []discordgo.MessageComponent{discordgo.ActionsRow{Components: []discordgo.MessageComponent{
			discordgo.SelectMenu{CustomID: "envs", MinValues: &zero, MaxValues: 2, Options: []discordgo.SelectMenuOption{
				{Label: "Production", Value: "prod"}, {Label: "Staging", Value: "staging"}, {Label: "Dev", Value: "dev"}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.SelectOptions("alice", m.ID, "envs", "prod", "qa"); err == nil {
		t.Fatal("selected a value that is not an option")
	}
	if _, err := h.srv.SelectOptions("alice", m.ID, "envs", "prod", "staging", "dev"); err == nil {
		t.Fatal("selected more than max_values")
	}
	if _, err := h.srv.SelectOptions("alice", m.ID, "envs", "prod", "dev"); err != nil {
		t.Fatal(err)
	}
	ic := h.interaction()
	if d := ic.MessageComponentData(); d.ComponentType != discordgo.SelectMenuComponent || strings.Join(d.Values, ",") != "prod,dev" {
		t.Fatalf("select data = %+v", d)
	}
}
