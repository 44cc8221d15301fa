package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/runbookbot/runbookbot/bot"
	discordbot "github.com/runbookbot/runbookbot/bot/discord"
	slackbot "github.com/runbookbot/runbookbot/bot/slack"
	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
	"github.com/runbookbot/runbookbot/integrations/metrics"
	"github.com/runbookbot/runbookbot/integrations/notify"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/integrations/secrets"
)

// botOptions configure a running bot (serve and dev).
type botOptions struct {
	common
	approvalChannel string
	botToken        string
	appToken        string
	apiURL          string
	audit           string
	alertChannels   string
	alertChannel    string
	listen          string
	noRBAC          bool
	limits          bot.Limits
	leaseTTL        time.Duration // replicas on Redis: how long a dead one's work waits (default 15s)
	discord         discordOptions
	api             apiOptions
	clock           engine.Clock
	logger          *slog.Logger
	slackMode       slackMode // Socket Mode or HTTP (slackhttp.go)
}

// runningBot is everything serve starts, for tests and dev to drive.
type runningBot struct {
	eng     *engine.Engine
	bot     *bot.Bot
	client  *slackbot.Client   // nil without Slack
	discord *discordbot.Client // nil without Discord
	store   engine.Store
	views   io.Closer // the chat view's store, when it needs closing
	cat     *engine.Catalog
	addr    string
	metrics *metrics.Metrics
	api     *triggers
	health  *health // /healthz and /readyz on --listen; nil: checks made from the fields
	// slackHTTP answers Slack on /slack/events in HTTP mode; nil otherwise.
	slackHTTP *slackbot.HTTPEndpoint
	// parts are the long-running parts run starts and waits for.
	parts []func(ctx context.Context) error
}

// run starts every long-running part (the Slack connection, the chat view,
// the audit mirror, group refreshes, lease watching) under one errgroup,
// and returns once all of them have stopped: when ctx ends, or when one
// fails (the others are then stopped).
func (r *runningBot) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range r.parts {
		g.Go(func() error {
			err := p(gctx)
			if err != nil {
				err = fmt.Errorf("part %d: %w", i, err)
			}
			return err
		})
	}
	return g.Wait()
}

// close releases what startBot opened; call it after run has returned.
func (r *runningBot) close() {
	r.eng.Close()
	if r.views != nil {
		r.views.Close()
	}
	r.store.Close()
}

// part wraps a loop that returns nothing.
func part(f func(ctx context.Context)) func(ctx context.Context) error {
	return func(ctx context.Context) error { f(ctx); return nil }
}

// openViews opens the chat view's store beside the event store: a file in
// the embedded store's directory, or keys in Redis.
func openViews(ctx context.Context, store engine.Store, where string) (bot.ViewStore, io.Closer, error) {
	if rs, ok := store.(*redis.Store); ok {
		return redis.NewChatViews(rs), nil, nil
	}
	if _, ok := store.(*embedded.Store); ok {
		v, err := embedded.OpenChatViews(where)
		if err != nil {
			return nil, nil, err
		}
		return v, v, nil
	}
	return bot.NewMemoryViews(), nil, nil
}

// startBot wires the engine, store, RBAC and Slack, resumes unfinished
// executions, and returns with the Socket Mode client ready to Run.
func startBot(ctx context.Context, o botOptions, stderr io.Writer) (*runningBot, error) {
	if err := o.slackMode.check(); err != nil {
		return nil, err
	}
	if (o.botToken == "" || (o.appToken == "" && !o.slackMode.http())) && (o.slackEnabled() || !o.discord.enabled()) {
		if o.slackMode.http() {
			return nil, errors.New("SLACK_BOT_TOKEN must be set (xoxb-…; with --slack-mode http no app token is needed, see deploy/slack-app-manifest-http.yaml), or DISCORD_BOT_TOKEN (see deploy/discord/README.md)")
		}
		return nil, errors.New("SLACK_BOT_TOKEN and SLACK_APP_TOKEN must be set (xoxb-… and xapp-…; see deploy/slack-app-manifest.yaml), or DISCORD_BOT_TOKEN (see deploy/discord/README.md)")
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var b *bot.Bot
	var notifier engine.Notifier = engine.NotifierFunc(func(ctx context.Context, n engine.Notification) error {
		return b.Notify(ctx, n)
	})
	if path := os.Getenv("RUNBOOKBOT_NOTIFY_CONFIG"); path != "" {
		ncfg, err := notify.LoadConfig(path)
		if err != nil {
			return nil, fmt.Errorf("notifications config: %w", err)
		}
		ncfg.Logger = log
		notifier = notify.New(ncfg, notifier)
	}
	reg := buildRegistry(registryOptions{notifier: notifier, logger: log})
	cat, diags := engine.LoadPaths(reg, o.runbooks)
	if len(diags) > 0 {
		// One record per file (the first problem and how many), every
		// problem at debug: records, also under --log-format json.
		byFile := map[string]engine.Diagnostics{}
		var files []string
		for _, d := range diags {
			if byFile[d.File] == nil {
				files = append(files, d.File)
			}
			byFile[d.File] = append(byFile[d.File], d)
			log.Debug("runbook problem", "diagnostic", d.String())
		}
		for _, f := range files {
			ds := byFile[f]
			log.Warn("runbook file has problems; a runbook with problems is not loaded", "file", f, "problems", len(ds),
				"first", ds[0].String(), "details", "runbookbot lint "+f)
		}
		if len(cat.Runbooks) == 0 {
			return nil, fmt.Errorf("no valid runbooks in %s", o.runbooks)
		}
		log.Warn("some runbooks did not load; serving the rest", "problems", len(diags), "serving", strings.Join(cat.Names(), ", "))
	}
	store, where, err := openStore(ctx, o.common)
	if err != nil {
		return nil, err
	}
	var chats []bot.Chat
	dirs := commands.Directories{}
	var newSlackClient func(*bot.Bot) *slackbot.Client
	if o.slackEnabled() {
		api := slackbot.NewAPI(slackbot.Config{BotToken: o.botToken, AppToken: o.appToken, APIURL: o.apiURL})
		if _, err := slackbot.Check(ctx, api); err != nil {
			store.Close()
			return nil, err
		}
		platform := slackbot.NewPlatform(api)
		newSlackClient = func(b *bot.Bot) *slackbot.Client { return slackbot.NewClient(api, b, log) }
		chats, dirs[commands.PlatformSlack] = append(chats, bot.Chat{Platform: platform, ApprovalChannel: o.approvalChannel, Limits: o.limits}), platform
	}
	var dplatform *discordbot.Platform
	if o.discord.enabled() {
		if dplatform, err = startDiscord(ctx, o.discord, log); err != nil {
			store.Close()
			return nil, err
		}
		chats, dirs[commands.PlatformDiscord] = append(chats, discordChat(dplatform, o.discord)), dplatform
	}
	var rbac *engine.RBACConfig
	if !o.noRBAC {
		rbac = o.api.tokens.Bind(cat.RBAC) // tokens acting as a group are its members
	}
	// Chat group members are fetched now and every five minutes on the
	// wall clock (not o.clock: tests count the engine's timers on theirs);
	// a group that fails is logged and denies only what depends on it.
	auth := commands.NewAuthorizer(rbac, dirs, commands.WithLogger(log))
	rctx, cancelRefresh := context.WithTimeout(ctx, 30*time.Second)
	_ = auth.Refresh(rctx) // failures are logged per group
	cancelRefresh()
	clock := o.clock
	if clock == nil {
		clock = engine.SystemClock{}
	}
	cfg := engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: clock, Approvers: auth,
		Secrets: secretSource(cat, log), Logger: log, DefaultStepTimeout: 10 * time.Minute}
	var parts []func(ctx context.Context) error
	var fwd *redis.Forwarder
	if rs, ok := store.(*redis.Store); ok {
		// Replicas share this store: leases decide who drives what, and
		// clicks reach the driver wherever they land.
		cfg.Leases, cfg.Owner, cfg.LeaseTTL = rs, hostOwner(), o.leaseTTL
		fwd = redis.NewForwarder(rs, cfg.Owner, log)
		cfg.Forwarder = fwd
	}
	eng := engine.New(cfg)
	met := metrics.New(metrics.FromLog(store))
	met.Prime(cat)
	if url := o.auditURL(); url != "" {
		client, err := redis.NewClient(url)
		if err != nil {
			eng.Close()
			store.Close()
			return nil, fmt.Errorf("audit stream: %w", err)
		}
		// A clean shutdown ships what is stored before the mirror stops.
		m := redis.NewMirror(store, client, redis.WithMirrorLogger(log), redis.WithFlushOnStop(10*time.Second))
		eng.Subscribe(func(engine.Event) { m.Notify() })
		met.Gauge("runbookbot_audit_mirror_lag_events", "Events stored but not yet in the Redis audit stream", func() float64 { return float64(m.Lag()) })
		met.Counter("runbookbot_audit_mirror_errors_total", "Failed attempts to ship audit events", func() float64 { return float64(m.Stats().Errors) })
		parts = append(parts, func(ctx context.Context) error {
			if err := m.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("audit mirror stopped", "err", err)
			}
			return nil
		})
		log.Info("mirroring audit events to Redis", "stream", m.Stream(), "redis", redactURL(url))
	}
	views, viewsCloser, err := openViews(ctx, store, where)
	if err != nil {
		eng.Close()
		store.Close()
		return nil, fmt.Errorf("chat view: %w", err)
	}
	trig, runSchedules, err := startTriggers(o, eng, auth, store, where, log)
	if err != nil {
		eng.Close()
		if viewsCloser != nil {
			viewsCloser.Close()
		}
		store.Close()
		return nil, fmt.Errorf("schedules and API: %w", err)
	}
	parts = append(parts, runSchedules)
	// On a shared store one replica at a time shows the log in chat (the
	// view lease); another takes over within the lease when it dies.
	// `/runbook schedules` answers from the scheduler.
	bcfg := bot.Config{Engine: eng, Auth: auth, Logger: log, Views: views, Owner: cfg.Owner, LeaseTTL: o.leaseTTL,
		Chats: chats, Schedules: trig.sched}
	if cat.Mappings != nil {
		bcfg.Alerts = &bot.AlertConfig{Matcher: alerts.NewMatcher(cat.Mappings, cat), Rules: alerts.DefaultRules(),
			Tracker: alerts.NewTracker(alerts.TrackerConfig{Now: clock.Now}), Channels: splitList(o.alertChannels), WebhookChannel: o.alertChannel,
			WebhookPlatform: o.discord.alertPlatform}
	}
	b = bot.New(bcfg)
	met.Counter("runbookbot_chat_rate_limited_total", "Chat calls refused with 429 (retried)", func() float64 { return float64(b.Stats().RateLimited) })
	met.Counter("runbookbot_chat_paced_total", "Chat calls held back before sending because the platform's limit would refuse them (retried; no 429)", func() float64 { return float64(b.Stats().Paced) })
	met.Gauge("runbookbot_chat_outbox_pending", "Renders waiting to be sent to chat", func() float64 { return float64(b.OutboxPending()) })
	met.Counter("runbookbot_chat_errors_total", "Chat calls that failed", func() float64 { return float64(b.Stats().Errors) })
	met.Gauge("runbookbot_alert_backlog", "Alertmanager notifications waiting to be handled", func() float64 { return float64(b.AlertBacklog()) })
	parts = append(parts, b.Run, part(auth.Run))
	var client *slackbot.Client
	var slackHTTP *slackbot.HTTPEndpoint
	if newSlackClient != nil {
		client = newSlackClient(b)
		run, ep := o.slackMode.run(client)
		parts, slackHTTP = append(parts, run), ep
	}
	var dclient *discordbot.Client
	if dplatform != nil {
		dclient = newDiscordClient(dplatform, b, eng, auth, splitList(o.alertChannels), log)
		parts = append(parts, dclient.Run)
	}
	if fwd != nil {
		parts = append(parts, part(func(ctx context.Context) { fwd.Serve(ctx, eng) }),
			part(func(ctx context.Context) { eng.Watch(ctx, 5*time.Second) }))
	}
	parts = append(parts, healthParts(store, where, cfg, eng, met, notifier, log)...)
	n, err := eng.Recover(ctx)
	if err != nil {
		log.Error("resuming executions", "err", err)
	}
	log.Info("runbookbot ready", "runbooks", len(cat.Runbooks), "store", where, "resumed", n, "rbac", rbac != nil)
	return &runningBot{eng: eng, bot: b, client: client, discord: dclient, store: store, views: viewsCloser, cat: cat, metrics: met, api: trig, parts: parts, slackHTTP: slackHTTP}, nil
}

// auditURL is where audit events are mirrored: --audit-redis, else the
// Redis store's own server, else none.
func (o botOptions) auditURL() string {
	if o.audit != "" {
		return o.audit
	}
	if strings.HasPrefix(o.store, "redis") {
		return o.store
	}
	return ""
}

// hostOwner names this replica in leases: host, pid and a random suffix.
func hostOwner() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", h, os.Getpid(), uuid.NewString()[:8])
}

// serveFlags defines serve's command line into o.
func serveFlags(o *botOptions) (*flag.FlagSet, *logFormat) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o.register(fs)
	fs.StringVar(&o.approvalChannel, "approval-channel", envOr("RUNBOOKBOT_APPROVAL_CHANNEL", "#incidents"), "`CHANNEL` where approval requests go"+env("RUNBOOKBOT_APPROVAL_CHANNEL"))
	fs.StringVar(&o.apiURL, "slack-api-url", os.Getenv("SLACK_API_URL"), "Slack Web API base `URL` (for an emulator)"+env("SLACK_API_URL"))
	o.discord.register(fs)
	o.slackMode.register(fs)
	o.api.register(fs)
	fs.BoolVar(&o.noRBAC, "no-rbac", false, "allow everyone everything (four-eyes still applies)")
	fs.StringVar(&o.alertChannels, "alert-channels", os.Getenv("RUNBOOKBOT_ALERT_CHANNELS"), "`CHANNELS` watched for alerts, comma-separated (default: every channel the bot is in)"+env("RUNBOOKBOT_ALERT_CHANNELS"))
	fs.StringVar(&o.alertChannel, "alert-channel", envOr("RUNBOOKBOT_ALERT_CHANNEL", "#alerts"), "`CHANNEL` where threads for webhook alerts go"+env("RUNBOOKBOT_ALERT_CHANNEL"))
	fs.StringVar(&o.listen, "listen", os.Getenv("RUNBOOKBOT_LISTEN"), "`ADDR` for /metrics, /healthz, /readyz and the Alertmanager webhook receiver (POST /alertmanager), e.g. :8080"+env("RUNBOOKBOT_LISTEN"))
	fs.DurationVar(&o.leaseTTL, "lease-ttl", envDuration("RUNBOOKBOT_LEASE_TTL", 15*time.Second), "with several replicas on Redis: how long a dead replica's executions and chat view wait before another takes them over"+env("RUNBOOKBOT_LEASE_TTL"))
	fs.StringVar(&o.audit, "audit-redis", os.Getenv("RUNBOOKBOT_AUDIT_REDIS"), "mirror audit events to this Redis `URL` (default: the Redis store, if any)"+env("RUNBOOKBOT_AUDIT_REDIS"))
	return fs, registerLogFormat(fs)
}

func cmdServe(ctx context.Context, args []string, _, stderr io.Writer) int {
	var o botOptions
	fs, lf := serveFlags(&o)
	if _, ok := parse(fs, args, stderr); !ok || !lf.apply(&o, stderr, slog.LevelDebug, "serve") {
		return exitUsage
	}
	if !o.api.load(stderr) || !o.slackMode.load(o.listen, stderr) {
		return exitUsage
	}
	o.botToken, o.appToken = os.Getenv("SLACK_BOT_TOKEN"), os.Getenv("SLACK_APP_TOKEN")
	o.discord.token = os.Getenv("DISCORD_BOT_TOKEN")
	rb, err := startBot(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot serve: %v\n", err)
		return exitFailure
	}
	defer rb.close()
	rb.health = newHealth(rb.readyChecks(slackProbe(o)))
	if o.listen != "" {
		if err := rb.listen(o.listen); err != nil {
			fmt.Fprintf(stderr, "runbookbot serve: %v\n", err)
			return exitFailure
		}
	}
	if err := rb.run(ctx); err != nil {
		fmt.Fprintf(stderr, "runbookbot serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// listen serves the Alertmanager webhook receiver, /metrics and a health
// check; the server is one of the parts run owns.
func (r *runningBot) listen(addr string) error {
	mux := http.NewServeMux()
	mux.Handle("/alertmanager", r.api.receiver(r.bot.WebhookHandler()))
	if r.slackHTTP != nil {
		mux.Handle(slackbot.EventsPath, r.slackHTTP)
	}
	r.api.mountAPI(mux)
	mux.Handle("/metrics", r.metrics.Handler())
	r.healthHandlers().mount(mux)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("webhook receiver: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.parts = append(r.parts, func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
		defer stop()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("webhook receiver: %w", err)
		}
		return nil
	})
	r.addr = l.Addr().String()
	return nil
}

// secretSource resolves secrets.* from RUNBOOKBOT_SECRET_<NAME> first (a
// local override), then the configured provider.
func secretSource(cat *engine.Catalog, log *slog.Logger) engine.SecretSource {
	if cat.Secrets == nil {
		return envSecrets{}
	}
	src, err := secrets.New(cat.Secrets, secrets.Deps{Logger: log})
	if err != nil {
		log.Error("secrets provider not available; only RUNBOOKBOT_SECRET_* variables will resolve", "err", err)
		return envSecrets{}
	}
	return chainSecrets{envSecrets{}, src}
}

type chainSecrets []engine.SecretSource

func (c chainSecrets) Secret(ctx context.Context, name string) (any, error) {
	var err error
	for _, s := range c {
		var v any
		if v, err = s.Secret(ctx, name); err == nil {
			return v, nil
		}
	}
	return nil, err
}

// envDuration reads a duration from the environment (def when unset or
// unreadable).
func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil && d > 0 {
		return d
	}
	return def
}
