package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	slackbot "github.com/runbookbot/runbookbot/bot/slack"
)

// slackMode chooses how Slack reaches serve: over Socket Mode (the app
// token; the default) or over HTTP, where Slack posts to /slack/events on
// --listen and every request is checked with the app's signing secret.
type slackMode struct {
	mode   string // "socket" or "http"
	secret string // SLACK_SIGNING_SECRET, read by load in HTTP mode
}

func (s *slackMode) register(fs *flag.FlagSet) {
	fs.StringVar(&s.mode, "slack-mode", envOr("RUNBOOKBOT_SLACK_MODE", "socket"),
		"`MODE` in which Slack reaches the bot: socket (Socket Mode, needs SLACK_APP_TOKEN) or http (Slack posts to POST /slack/events on --listen, verified with SLACK_SIGNING_SECRET; deploy/slack-app-manifest-http.yaml)"+env("RUNBOOKBOT_SLACK_MODE"))
}

// http says whether Slack reaches the bot over HTTP.
func (s slackMode) http() bool { return s.mode == "http" }

// load checks the mode against the rest of the command line and, in HTTP
// mode, reads the signing secret; on a mistake it says why and returns
// false.
func (s *slackMode) load(listen string, stderr io.Writer) bool {
	switch s.mode {
	case "socket":
		return true
	case "http":
	default:
		fmt.Fprintf(stderr, "runbookbot serve: --slack-mode %q: want socket or http\n", s.mode)
		return false
	}
	if listen == "" {
		fmt.Fprintln(stderr, "runbookbot serve: --slack-mode http needs --listen ADDR (Slack posts to https://<your host>/slack/events there)")
		return false
	}
	s.secret = os.Getenv("SLACK_SIGNING_SECRET")
	return true
}

// check reports what HTTP mode lacks before anything is started.
func (s slackMode) check() error {
	if s.http() && s.secret == "" {
		return slackbot.ErrNoSigningSecret
	}
	return nil
}

// run is what serves Slack's side for client: its Socket Mode connection,
// or in HTTP mode the endpoint that listen mounts on /slack/events (its
// Run owns the handlers requests start).
func (s slackMode) run(client *slackbot.Client) (func(ctx context.Context) error, *slackbot.HTTPEndpoint) {
	if !s.http() {
		return client.Run, nil
	}
	ep, err := slackbot.NewHTTPEndpoint(client, slackbot.HTTPOptions{SigningSecret: s.secret})
	if err != nil { // check has been called: not reached
		return func(context.Context) error { return err }, nil
	}
	return ep.Run, ep
}
