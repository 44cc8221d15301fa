package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/integrations/embedded"
)

// cmdDev runs the bot against the built-in Slack emulator with the
// embedded store: a local playground with nothing to set up.
// devFlags defines dev's command line: the bot's options into o, the
// playground's in the result.
func devFlags(o *botOptions) (*flag.FlagSet, devFlagValues) {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	o.register(fs)
	o.api.register(fs)
	return fs, devFlagValues{
		addr:        fs.String("addr", "127.0.0.1:3000", "`ADDR` where the playground listens (Slack emulator, the API at /api/v1, /healthz, /readyz, /metrics)"),
		discordAddr: fs.String("discord-addr", "", "`ADDR` where the Discord playground listens (default: the port after --addr; \"off\": no Discord)"),
		rbac:        fs.Bool("rbac", false, "enforce runbooks/rbac.yaml (the playground's users are not in it)"),
		lf:          registerLogFormat(fs),
	}
}

// devFlagValues are dev's own flags.
type devFlagValues struct {
	addr, discordAddr *string
	rbac              *bool
	lf                *logFormat
}

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o botOptions
	fs, f := devFlags(&o)
	addr, discordAddr, rbac, lf := f.addr, f.discordAddr, f.rbac, f.lf
	if _, ok := parse(fs, args, stderr); !ok || !lf.apply(&o, stderr, slog.LevelInfo, "dev") {
		return exitUsage
	}
	if o.dataDir == "" && o.store == "" {
		dir, err := embedded.DefaultDir()
		if err != nil {
			fmt.Fprintf(stderr, "runbookbot dev: %v\n", err)
			return exitFailure
		}
		o.dataDir = filepath.Join(dir, "dev")
	}
	emu := slackemu.New(slackemu.Options{Addr: *addr, BotToken: "xoxb-dev", AppToken: "xapp-dev"})
	// The emulator, the API, /healthz, /readyz and /metrics share the
	// address.
	srv, err := serveDev(emu, *addr)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot dev: starting the Slack playground on %s: %v (try --addr 127.0.0.1:0)\n", *addr, err)
		return exitFailure
	}
	defer srv.close()
	defer emu.Close()
	demo := emu.SeedDemo()
	emu.AddChannel("incidents")
	o.botToken, o.appToken, o.apiURL = "xoxb-dev", "xapp-dev", emu.APIURL()
	o.noRBAC = !*rbac
	o.approvalChannel = "#incidents"
	sayDiscord := func(io.Writer) {}
	if da := devDiscordAddr(*addr, *discordAddr); da != "" {
		say, stop, err := discordPlayground(da, &o)
		if err != nil {
			fmt.Fprintf(stderr, "runbookbot dev: starting the Discord playground on %s: %v (try --discord-addr 127.0.0.1:0, or --discord-addr off)\n", da, err)
			return exitFailure
		}
		defer stop()
		sayDiscord = say
	}
	if !o.api.load(stderr) {
		return exitUsage
	}
	demoToken, _ := o.api.addDemoToken(demo.Users["bob"]) // start as alice in chat, approve as bob over the API
	rb, err := startBot(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot dev: %v\n", err)
		return exitFailure
	}
	defer rb.close()
	srv.attach(rb, slackProbe(o))
	apiURL := emu.URL() + "api/v1"
	incidentsURL, err := rb.devIncidents(devSideAddr(*addr), o.logger) // a local PagerDuty the timelines go to
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot dev: %v\n", err)
		return exitFailure
	}
	wait := rb.startRun(ctx) // the Discord playground is connected before the URLs are printed
	fmt.Fprintf(stdout, "runbookbot playground: %s\n", emu.URL())
	fmt.Fprintf(stdout, "  health: %shealthz, %sreadyz · metrics: %smetrics\n", emu.URL(), emu.URL(), emu.URL())
	fmt.Fprintf(stdout, "  users: alice, bob, carol · channels: #ops, #alerts, #incidents · store: %s\n", o.dataDir)
	fmt.Fprintf(stdout, "  try: /runbook run example-echo service=checkout environment=production (as alice, approve as bob)\n")
	fmt.Fprintf(stdout, "  alert webhook: %s\n", demo.AlertWebhook)
	fmt.Fprintf(stdout, "  API: %s · demo token (acts as bob): %s\n", apiURL, demoToken)
	if incidentsURL != "" {
		fmt.Fprintf(stdout, "  incidents (PagerDuty emulator): %s\n", incidentsURL)
	}
	sayDiscord(stdout)
	if err := wait(); err != nil {
		fmt.Fprintf(stderr, "runbookbot dev: %v\n", err)
		return exitFailure
	}
	_ = os.Stdout.Sync()
	return exitOK
}
