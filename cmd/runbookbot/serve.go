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

	"github.com/runbookbot/runbookbot/bot"
	slackbot "github.com/runbookbot/runbookbot/bot/slack"
	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/alerts"
	"github.com/runbookbot/runbookbot/engine"
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
	clock           engine.Clock
	logger          *slog.Logger
}

// runningBot is everything serve starts, for tests and dev to drive.
type runningBot struct {
	eng     *engine.Engine
	bot     *bot.Bot
	client  *slackbot.Client
	store   engine.Store
	cat     *engine.Catalog
	stopBG  context.CancelFunc
	addr    string
	metrics *metrics.Metrics
}

func (r *runningBot) close() {
	r.stopBG()
	r.bot.Close()
	r.eng.Close()
	r.store.Close()
}

// startBot wires the engine, store, RBAC and Slack, resumes unfinished
// executions, and returns with the Socket Mode client ready to Run.
func startBot(ctx context.Context, o botOptions, stderr io.Writer) (*runningBot, error) {
	if o.botToken == "" || o.appToken == "" {
		return nil, errors.New("SLACK_BOT_TOKEN and SLACK_APP_TOKEN must be set (xoxb-… and xapp-…; see deploy/slack-app-manifest.yaml)")
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
		for _, d := range diags {
			fmt.Fprintln(stderr, d.String())
		}
		if len(cat.Runbooks) == 0 {
			return nil, fmt.Errorf("no valid runbooks in %s", o.runbooks)
		}
		log.Warn("some runbooks did not load; serving the rest", "problems", len(diags))
	}
	store, where, err := openStore(ctx, o.common)
	if err != nil {
		return nil, err
	}
	api := slackbot.NewAPI(slackbot.Config{BotToken: o.botToken, AppToken: o.appToken, APIURL: o.apiURL})
	if _, err := slackbot.Check(ctx, api); err != nil {
		store.Close()
		return nil, err
	}
	platform := slackbot.NewPlatform(api)
	var rbac *engine.RBACConfig
	if !o.noRBAC {
		rbac = cat.RBAC
	}
	// Chat group members are fetched now and every five minutes on the
	// wall clock (not o.clock: tests count the engine's timers on theirs);
	// a group that fails is logged and denies only what depends on it.
	auth := commands.NewAuthorizer(rbac, commands.Directories{commands.PlatformSlack: platform}, commands.WithLogger(log))
	rctx, cancelRefresh := context.WithTimeout(ctx, 30*time.Second)
	_ = auth.Refresh(rctx) // failures are logged per group
	cancelRefresh()
	clock := o.clock
	if clock == nil {
		clock = engine.SystemClock{}
	}
	cfg := engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: clock, Approvers: auth,
		Secrets: secretSource(cat, log), Logger: log, DefaultStepTimeout: 10 * time.Minute}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var fwd *redis.Forwarder
	if rs, ok := store.(*redis.Store); ok {
		// Replicas share this store: leases decide who drives what, and
		// clicks reach the driver wherever they land.
		cfg.Leases, cfg.Owner = rs, hostOwner()
		fwd = redis.NewForwarder(rs, cfg.Owner, log)
		cfg.Forwarder = fwd
	}
	eng := engine.New(cfg)
	met := metrics.New()
	eng.Subscribe(met.Observe)
	if url := o.auditURL(); url != "" {
		client, err := redis.NewClient(url)
		if err != nil {
			stopBG()
			eng.Close()
			store.Close()
			return nil, fmt.Errorf("audit stream: %w", err)
		}
		// A clean shutdown ships what is stored before the mirror stops.
		m := redis.NewMirror(store, client, redis.WithMirrorLogger(log), redis.WithFlushOnStop(10*time.Second))
		eng.Subscribe(func(engine.Event) { m.Notify() })
		met.Gauge("runbookbot_audit_mirror_lag_events", "Events stored but not yet in the Redis audit stream", func() float64 { return float64(m.Lag()) })
		met.Counter("runbookbot_audit_mirror_errors_total", "Failed attempts to ship audit events", func() float64 { return float64(m.Stats().Errors) })
		go func() {
			if err := m.Run(bg); err != nil && bg.Err() == nil {
				log.Error("audit mirror stopped", "err", err)
			}
		}()
		log.Info("mirroring audit events to Redis", "stream", m.Stream(), "redis", redactURL(url))
	}
	bcfg := bot.Config{Engine: eng, Auth: auth, Platform: platform, ApprovalChannel: o.approvalChannel, Limits: o.limits, Logger: log}
	if cat.Mappings != nil {
		bcfg.Alerts = &bot.AlertConfig{Matcher: alerts.NewMatcher(cat.Mappings, cat), Rules: alerts.DefaultRules(),
			Tracker: alerts.NewTracker(alerts.TrackerConfig{Now: clock.Now}), Channels: splitList(o.alertChannels), WebhookChannel: o.alertChannel}
	}
	b = bot.New(bcfg)
	met.Counter("runbookbot_chat_rate_limited_total", "Chat calls refused with 429 (retried)", func() float64 { return float64(b.Stats().RateLimited) })
	met.Counter("runbookbot_chat_errors_total", "Chat calls that failed", func() float64 { return float64(b.Stats().Errors) })
	met.Gauge("runbookbot_alert_backlog", "Alertmanager notifications waiting to be handled", func() float64 { return float64(b.AlertBacklog()) })
	if err := b.Start(ctx); err != nil {
		stopBG()
		eng.Close()
		store.Close()
		return nil, err
	}
	go auth.Run(bg)
	if fwd != nil {
		go fwd.Serve(bg, eng)
		go eng.Watch(bg, 5*time.Second)
	}
	n, err := eng.Recover(ctx)
	if err != nil {
		log.Error("resuming executions", "err", err)
	}
	log.Info("runbookbot ready", "runbooks", len(cat.Runbooks), "store", where, "resumed", n, "rbac", rbac != nil)
	return &runningBot{eng: eng, bot: b, client: slackbot.NewClient(api, b, log), store: store, cat: cat, stopBG: stopBG, metrics: met}, nil
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

func cmdServe(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var o botOptions
	o.register(fs)
	fs.StringVar(&o.approvalChannel, "approval-channel", envOr("RUNBOOKBOT_APPROVAL_CHANNEL", "#incidents"), "where approval requests go")
	fs.StringVar(&o.apiURL, "slack-api-url", os.Getenv("SLACK_API_URL"), "Slack Web API base URL (for an emulator)")
	fs.BoolVar(&o.noRBAC, "no-rbac", false, "allow everyone everything (four-eyes still applies)")
	fs.StringVar(&o.alertChannels, "alert-channels", os.Getenv("RUNBOOKBOT_ALERT_CHANNELS"), "channels watched for alerts, comma-separated (default: every channel the bot is in)")
	fs.StringVar(&o.alertChannel, "alert-channel", envOr("RUNBOOKBOT_ALERT_CHANNEL", "#alerts"), "where threads for webhook alerts go")
	fs.StringVar(&o.listen, "listen", os.Getenv("RUNBOOKBOT_LISTEN"), "address for /metrics, /healthz and the Alertmanager webhook receiver (POST /alertmanager), e.g. :8080")
	fs.StringVar(&o.audit, "audit-redis", os.Getenv("RUNBOOKBOT_AUDIT_REDIS"), "mirror audit events to this Redis (default: the Redis store, if any)")
	if _, ok := parse(fs, args, stderr); !ok {
		return exitUsage
	}
	o.botToken, o.appToken = os.Getenv("SLACK_BOT_TOKEN"), os.Getenv("SLACK_APP_TOKEN")
	rb, err := startBot(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot serve: %v\n", err)
		return exitFailure
	}
	defer rb.close()
	if o.listen != "" {
		srv, err := rb.listen(o.listen)
		if err != nil {
			fmt.Fprintf(stderr, "runbookbot serve: %v\n", err)
			return exitFailure
		}
		defer srv.Close()
	}
	if err := rb.client.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "runbookbot serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// listen serves the Alertmanager webhook receiver and a health check.
func (r *runningBot) listen(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/alertmanager", r.bot.WebhookHandler())
	mux.Handle("/metrics", r.metrics.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	r.addr = l.Addr().String()
	return srv, nil
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
