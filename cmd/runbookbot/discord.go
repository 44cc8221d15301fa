package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/runbookbot/runbookbot/bot"
	discordbot "github.com/runbookbot/runbookbot/bot/discord"
	discordemu "github.com/runbookbot/runbookbot/bot/discord/emulator"
	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

// discordOptions configure the Discord side of serve and dev: it is on
// when a bot token is set, beside Slack or alone.
type discordOptions struct {
	token           string
	apiURL          string
	guilds          string
	approvalChannel string
	globalCommands  bool
	alertPlatform   string
	noContent       bool
	limits          bot.Limits
}

// register adds the Discord flags (the token comes from the environment
// only: DISCORD_BOT_TOKEN).
func (d *discordOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&d.apiURL, "discord-api-url", os.Getenv("DISCORD_API_URL"), "Discord base `URL` replacing https://discord.com/ (for an emulator)"+env("DISCORD_API_URL"))
	fs.StringVar(&d.guilds, "discord-guilds", os.Getenv("DISCORD_GUILD_IDS"), "Discord guild `IDS` to serve and register /runbook in, comma-separated (default: every guild the bot is in)"+env("DISCORD_GUILD_IDS"))
	fs.StringVar(&d.approvalChannel, "discord-approval-channel", envOr("DISCORD_APPROVAL_CHANNEL", "#incidents"), "Discord `CHANNEL` for approval requests"+env("DISCORD_APPROVAL_CHANNEL"))
	fs.StringVar(&d.alertPlatform, "alert-platform", os.Getenv("RUNBOOKBOT_ALERT_PLATFORM"), "where the Alertmanager receiver opens alert threads: slack or discord (default: Slack when configured)"+env("RUNBOOKBOT_ALERT_PLATFORM"))
	fs.BoolVar(&d.noContent, "discord-no-message-content", os.Getenv("DISCORD_MESSAGE_CONTENT") == "false", "connect without the MESSAGE_CONTENT intent (alerts posted in Discord channels are then not read) [$DISCORD_MESSAGE_CONTENT=false]")
	fs.BoolVar(&d.globalCommands, "discord-global-commands", os.Getenv("DISCORD_GLOBAL_COMMANDS") == "true", "also register /runbook globally [$DISCORD_GLOBAL_COMMANDS=true]")
}

func (d discordOptions) enabled() bool { return d.token != "" }

// slackEnabled says whether Slack is configured (either token set; both
// are then required).
func (o botOptions) slackEnabled() bool { return o.botToken != "" || o.appToken != "" }

// startDiscord checks the token and returns the platform, not yet
// connected.
func startDiscord(ctx context.Context, d discordOptions, log *slog.Logger) (*discordbot.Platform, error) {
	p, err := discordbot.New(discordbot.Config{Token: d.token, APIURL: d.apiURL, Guilds: splitList(d.guilds),
		GlobalCommands: d.globalCommands, NoMessageContent: d.noContent, Logger: log})
	if err != nil {
		return nil, err
	}
	if _, err := p.Check(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// discordChat is Discord as one of the bot's chats.
func discordChat(p *discordbot.Platform, d discordOptions) bot.Chat {
	return bot.Chat{Platform: p, ApprovalChannel: d.approvalChannel, Limits: d.limits}
}

// newDiscordClient connects the bot to Discord's gateway, with runbook
// names and parameters for autocomplete.
// Role members are fetched again once the gateway has said which guilds
// the bot is in.
func newDiscordClient(p *discordbot.Platform, b *bot.Bot, eng *engine.Engine, auth *commands.Authorizer, watch []string, log *slog.Logger) *discordbot.Client {
	return discordbot.NewClient(p, b, discordbot.ClientOptions{Logger: log, WatchChannels: watch,
		OnReady: func(ctx context.Context) { _ = auth.Refresh(ctx) }, // failures are logged per group
		Runbooks: func() []discordbot.RunbookHint {
			cat := eng.Catalog()
			if cat == nil {
				return nil
			}
			var out []discordbot.RunbookHint
			for _, n := range cat.Names() {
				rb := cat.Runbooks[n]
				h := discordbot.RunbookHint{Name: n, Description: rb.Metadata.Description}
				for _, p := range rb.Parameters {
					h.Params = append(h.Params, p.Name)
				}
				out = append(out, h)
			}
			return out
		}})
}

// discordPlayground starts the Discord emulator for dev on addr, seeds
// its demo guild (alice, bob, carol; roles oncall and sre; #ops, #alerts,
// #incidents; an "Alertmanager" webhook into #alerts) and points o at it.
// It returns what to print once the bot is up, and the emulator's Close.
func discordPlayground(addr string, o *botOptions) (say func(io.Writer), stop func(), err error) {
	emu := discordemu.New(discordemu.Options{Addr: addr, Token: "dev-discord-token", GuildName: "runbookbot playground"})
	if err := emu.Start(); err != nil {
		return nil, nil, err
	}
	demo := emu.SeedDemo()
	o.discord = discordOptions{token: emu.Token(), apiURL: emu.URL(), approvalChannel: "#incidents", alertPlatform: o.discord.alertPlatform}
	say = func(w io.Writer) {
		fmt.Fprintf(w, "discord playground: %s\n", emu.URL())
		fmt.Fprintf(w, "  try: /runbook run name:example-echo params:\"service=checkout environment=production\" (as alice, approve as bob)\n")
		fmt.Fprintf(w, "  Alertmanager discord_configs webhook_url: %s\n", demo.AlertWebhook)
	}
	return say, func() { _ = emu.Close() }, nil
}

// devDiscordAddr is where dev's Discord playground listens: as given, none
// for "off", else the port after the Slack playground's (a free port when
// that one is).
func devDiscordAddr(addr, flagValue string) string {
	switch flagValue {
	case "off":
		return ""
	case "":
	default:
		return flagValue
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n == 0 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// startRun runs the bot's parts in the background and returns once its
// Discord client (if any) has connected, or within 10 seconds, so that
// what dev prints next already works; wait returns run's result.
func (r *runningBot) startRun(ctx context.Context) (wait func() error) {
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	wait = func() error { return <-done }
	if r.discord == nil {
		return wait
	}
	select {
	case <-r.discord.Ready():
	case err := <-done:
		return func() error { return err }
	case <-time.After(10 * time.Second):
	}
	return wait
}
