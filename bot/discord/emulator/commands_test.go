package emulator

import (
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
)

func TestCommandRegistration(t *testing.T) {
	h := start(t, Options{})
	app := h.srv.ApplicationID()
	global, err := h.dg.ApplicationCommandBulkOverwrite(app, "", []*discordgo.ApplicationCommand{
		{Name: "runbook", Description: "Run a runbook"}, {Name: "whoami", Description: "Show your roles"}})
	if err != nil || len(global) != 2 || global[0].GuildID != "" {
		t.Fatalf("global overwrite = %+v, %v", global, err)
	}
	// Overwriting again keeps the ID of a command with the same name.
	again, err := h.dg.ApplicationCommandBulkOverwrite(app, "", []*discordgo.ApplicationCommand{{Name: "runbook", Description: "Run runbooks"}})
	if err != nil || len(again) != 1 || again[0].ID != global[0].ID || again[0].Version == global[0].Version {
		t.Fatalf("second overwrite = %+v, %v", again, err)
	}
	if list, err := h.dg.ApplicationCommands(app, ""); err != nil || len(list) != 1 || list[0].Description != "Run runbooks" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	// A global command can be run in any guild channel.
	h.connect(botIntents)
	if _, err := h.srv.RunCommand("alice", "ops", "/runbook"); err != nil {
		t.Fatal(err)
	}
	if ic := h.interaction(); ic.ApplicationCommandData().ID != global[0].ID {
		t.Fatalf("command id = %q", ic.ApplicationCommandData().ID)
	}
	for _, tc := range []struct {
		name string
		cmd  discordgo.ApplicationCommand
	}{
		{"upper-case name", discordgo.ApplicationCommand{Name: "Runbook", Description: "x"}},
		{"no description", discordgo.ApplicationCommand{Name: "runbook"}},
		{"name over 32", discordgo.ApplicationCommand{Name: strings.Repeat("r", 33), Description: "x"}},
		{"required after optional", discordgo.ApplicationCommand{Name: "runbook", Description: "x", Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionString, Name: "a", Description: "a"},
			{Type: discordgo.ApplicationCommandOptionString, Name: "b", Description: "b", Required: true}}}},
		{"sub-commands mixed with options", discordgo.ApplicationCommand{Name: "runbook", Description: "x", Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionSubCommand, Name: "run", Description: "run"},
			{Type: discordgo.ApplicationCommandOptionString, Name: "b", Description: "b"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tc.cmd
			_, err := h.dg.ApplicationCommandBulkOverwrite(app, h.srv.GuildID(), []*discordgo.ApplicationCommand{&cmd})
			restErr(t, err, 400, 50035)
		})
	}
	_, err = h.dg.ApplicationCommandBulkOverwrite(app, "1", nil)
	restErr(t, err, 404, 10004)
	c, err := h.dg.ApplicationCommandCreate(app, h.srv.GuildID(), &discordgo.ApplicationCommand{Name: "status", Description: "Status"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.dg.ApplicationCommandDelete(app, h.srv.GuildID(), c.ID); err != nil {
		t.Fatal(err)
	}
	restErr(t, h.dg.ApplicationCommandDelete(app, h.srv.GuildID(), c.ID), 404, 10063)
}
