package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/api"
	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/engine"
)

// apiOptions configure the HTTP API, the scheduler and the Alertmanager
// receiver's authentication (serve and dev).
type apiOptions struct {
	tokensFile string
	tokens     *api.Tokens
	// channel is where scheduled and API-started runs post their thread.
	channel string
	// receiverAuth makes POST /alertmanager require a token.
	receiverAuth bool
}

func (a *apiOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&a.tokensFile, "api-tokens", os.Getenv("RUNBOOKBOT_API_TOKENS"), "YAML `FILE` of API tokens: a list of {name, sha256, subject}; without it /api/v1 refuses every request"+env("RUNBOOKBOT_API_TOKENS"))
	fs.StringVar(&a.channel, "runs-channel", envOr("RUNBOOKBOT_RUNS_CHANNEL", "#ops"), "`CHANNEL` where scheduled and API-started runs post their thread (empty: no thread)"+env("RUNBOOKBOT_RUNS_CHANNEL"))
	fs.BoolVar(&a.receiverAuth, "alertmanager-auth", envBool("RUNBOOKBOT_ALERTMANAGER_AUTH"), "require an API token on POST /alertmanager (bearer, or basic auth with the token's name)"+env("RUNBOOKBOT_ALERTMANAGER_AUTH"))
}

func envBool(k string) bool {
	switch os.Getenv(k) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// load reads the tokens file; on a bad file it says why and returns false.
func (a *apiOptions) load(stderr io.Writer) bool {
	if a.tokensFile == "" {
		a.tokens, _ = api.ParseTokens(nil)
		return true
	}
	t, err := api.LoadTokens(a.tokensFile)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot: %v\n", err)
		return false
	}
	a.tokens = t
	return true
}

// triggers are the scheduler and the HTTP API of a running bot.
type triggers struct {
	api          http.Handler
	sched        *schedule.Scheduler
	tokens       *api.Tokens
	receiverAuth bool
}

// startTriggers builds the scheduler and the API over a started engine;
// the scheduler's loop is returned as a part to run.
func startTriggers(o botOptions, eng *engine.Engine, auth *commands.Authorizer, store engine.Store, where string, log *slog.Logger) (*triggers, func(ctx context.Context) error, error) {
	sstore, keys, err := openTriggerStores(store, where, eng.Clock())
	if err != nil {
		return nil, nil, err
	}
	platform := commands.PlatformSlack
	if !o.slackEnabled() && o.discord.enabled() {
		platform = commands.PlatformDiscord
	}
	tokens := o.api.tokens
	if tokens == nil {
		tokens, _ = api.ParseTokens(nil)
	}
	sched := schedule.New(schedule.Config{Store: sstore, Starter: eng, Catalog: eng.Catalog, Clock: eng.Clock(), Logger: log,
		Platform: platform, Channel: o.api.channel, Auth: auth})
	h := api.New(api.Config{Engine: eng, Tokens: tokens, Auth: auth, Keys: keys, Platform: platform, Channel: o.api.channel,
		Clock: eng.Clock(), Logger: log})
	t := &triggers{api: h, sched: sched, tokens: tokens, receiverAuth: o.api.receiverAuth}
	return t, sched.Run, nil
}

// mountAPI serves /api/v1 on mux.
func (t *triggers) mountAPI(mux *http.ServeMux) {
	if t == nil {
		return
	}
	mux.Handle("/api/v1/", t.api)
}

// receiver guards the Alertmanager receiver when --alertmanager-auth is set.
func (t *triggers) receiver(h http.Handler) http.Handler {
	if t == nil || !t.receiverAuth {
		return h
	}
	return t.tokens.Receiver(h)
}

// addDemoToken gives dev a ready token acting as user (printed once).
func (a *apiOptions) addDemoToken(user string) (string, error) {
	if a.tokens == nil {
		a.tokens, _ = api.ParseTokens(nil)
	}
	tok, e := api.NewToken("dev-demo", user)
	return tok, a.tokens.Add(e)
}

// devSideAddr is where dev serves a side playground of its own (the
// PagerDuty emulator): a free port on the playground's host.
func devSideAddr(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, "0")
}
