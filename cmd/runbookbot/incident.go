package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
	"github.com/runbookbot/runbookbot/integrations/incident"
	"github.com/runbookbot/runbookbot/integrations/incident/pdemu"
	"github.com/runbookbot/runbookbot/integrations/metrics"
	"github.com/runbookbot/runbookbot/integrations/redis"
)

// incidentTimeline builds the incident timeline from
// RUNBOOKBOT_INCIDENT_CONFIG (path), or returns nil when none is set.
func incidentTimeline(path string, store engine.Store, secrets engine.SecretSource, owner string, log *slog.Logger) (*incident.Timeline, error) {
	if path == "" {
		return nil, nil
	}
	cfg, err := incident.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return newTimeline(cfg, store, secrets, owner, log), nil
}

// newTimeline builds the timeline for cfg. Its checkpoint lives beside
// the store: a file in the embedded store's directory, a key in the Redis
// store.
func newTimeline(cfg incident.Config, store engine.Store, secrets engine.SecretSource, owner string, log *slog.Logger) *incident.Timeline {
	providers := map[string]incident.Provider{}
	if cfg.PagerDuty != nil {
		providers[incident.PagerDutyName] = incident.NewPagerDuty(*cfg.PagerDuty, secrets, nil)
	}
	for _, w := range cfg.Webhooks {
		providers[w.Name] = incident.NewWebhook(w, secrets, nil)
	}
	o := incident.Options{Source: store, Providers: providers, Route: cfg.ProviderFor, Create: cfg.Create,
		Owner: owner, StartAtHead: true, Logger: log}
	switch st := store.(type) {
	case *redis.Store:
		o.Checkpoints = &redisCheckpoints{client: st.Client(), key: st.Prefix() + "incident:checkpoint"}
		o.IntentTTL = time.Minute // replicas share it
	case *embedded.Store:
		o.Checkpoints = incident.NewFileCheckpoints(filepath.Join(st.Dir(), "incident-checkpoint.json"))
	default:
		o.Checkpoints = &incident.MemoryCheckpoints{}
	}
	log.Info("incident timelines on", "providers", cfg.Names(), "default", cfg.Default)
	return incident.NewTimeline(o)
}

// timelinePart wakes tl on every event of eng, exports its counters and
// returns the part that runs it.
func timelinePart(tl *incident.Timeline, eng *engine.Engine, met *metrics.Metrics, log *slog.Logger) func(context.Context) error {
	eng.Subscribe(func(engine.Event) { tl.Notify() })
	exportIncidentStats(met, tl)
	return func(ctx context.Context) error {
		if err := tl.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("incident timeline stopped", "err", err)
		}
		return nil
	}
}

// devPagerDuty is the account `runbookbot dev` emulates.
var devPagerDuty = struct{ token, from, service string }{"dev-pagerduty-token", "runbookbot@example.com", "PDEV001"}

// devIncidents serves the PagerDuty emulator on addr (its incidents page
// at /, the REST API beside it) and writes every execution's timeline to
// it, unless RUNBOOKBOT_INCIDENT_CONFIG configures real timelines. It
// returns the page's URL ("" when not started).
func (r *runningBot) devIncidents(addr string, log *slog.Logger) (string, error) {
	if os.Getenv("RUNBOOKBOT_INCIDENT_CONFIG") != "" {
		return "", nil
	}
	emu := pdemu.New(pdemu.Config{Tokens: []string{devPagerDuty.token},
		Users:    []pdemu.User{{ID: "PDEVBOT", Name: "runbookbot", Email: devPagerDuty.from}},
		Services: []pdemu.Service{{ID: devPagerDuty.service, Name: "playground", PolicyID: "PDEVPOL"}}})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", emu.Page())
	mux.Handle("/", emu)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("PagerDuty emulator: %w", err)
	}
	url := "http://" + l.Addr().String()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.parts = append(r.parts, func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
		defer stop()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("PagerDuty emulator: %w", err)
		}
		return nil
	})
	cfg := incident.Config{PagerDuty: &incident.PagerDutyConfig{URL: url, Token: devPagerDuty.token, From: devPagerDuty.from,
		ServiceID: devPagerDuty.service}, Default: incident.PagerDutyName, Create: true}
	tl := newTimeline(cfg, r.store, nil, hostOwner(), log)
	r.parts = append(r.parts, timelinePart(tl, r.eng, r.metrics, log))
	return url + "/", nil
}

// exportIncidentStats adds the timeline's counters to /metrics.
func exportIncidentStats(m *metrics.Metrics, t *incident.Timeline) {
	m.Counter("runbookbot_incident_operations_total", "Incident timeline operations completed", func() float64 { return float64(t.Stats().Sent) })
	m.Counter("runbookbot_incident_dropped_total", "Incident timeline operations the provider refused for good", func() float64 { return float64(t.Stats().Dropped) })
	m.Counter("runbookbot_incident_errors_total", "Failed incident timeline attempts (retried)", func() float64 { return float64(t.Stats().Errors) })
}

// redisCheckpoints keeps the incident checkpoint in one Redis hash
// (fields data and version), compare-and-set under WATCH.
type redisCheckpoints struct {
	client goredis.UniversalClient
	key    string
}

func (r *redisCheckpoints) Load(ctx context.Context) ([]byte, uint64, error) {
	vals, err := r.client.HMGet(ctx, r.key, "data", "version").Result()
	if err != nil {
		return nil, 0, fmt.Errorf("redis: %w", err)
	}
	data, _ := vals[0].(string)
	vs, _ := vals[1].(string)
	v, _ := strconv.ParseUint(vs, 10, 64)
	return []byte(data), v, nil
}

func (r *redisCheckpoints) Save(ctx context.Context, data []byte, version uint64) (uint64, error) {
	next := version + 1
	err := r.client.Watch(ctx, func(tx *goredis.Tx) error {
		vs, err := tx.HGet(ctx, r.key, "version").Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		cur, _ := strconv.ParseUint(vs, 10, 64)
		if cur != version {
			return incident.ErrConflict
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, r.key, "data", data, "version", strconv.FormatUint(next, 10))
			return nil
		})
		return err
	}, r.key)
	if errors.Is(err, goredis.TxFailedErr) {
		return 0, incident.ErrConflict
	}
	if err != nil {
		return 0, err
	}
	return next, nil
}

// healthParts are serve's runbook health parts: the incident timeline
// (RUNBOOKBOT_INCIDENT_CONFIG) and the periodic drift check
// (RUNBOOKBOT_DRIFT_INTERVAL, default 10m, 0 turns it off; changes posted
// to RUNBOOKBOT_DRIFT_CHANNEL). A broken incident configuration is logged
// and leaves timelines off.
func healthParts(store engine.Store, _ string, cfg engine.Config, eng *engine.Engine, met *metrics.Metrics, notifier engine.Notifier, log *slog.Logger) []func(context.Context) error {
	var parts []func(context.Context) error
	owner := cfg.Owner
	if owner == "" {
		owner = hostOwner()
	}
	tl, err := incidentTimeline(envOr("RUNBOOKBOT_INCIDENT_CONFIG", ""), store, cfg.Secrets, owner, log)
	switch {
	case err != nil:
		log.Error("incident timelines are OFF: the configuration does not load", "err", err)
	case tl != nil:
		parts = append(parts, timelinePart(tl, eng, met, log))
	}
	interval := 10 * time.Minute
	if s := envOr("RUNBOOKBOT_DRIFT_INTERVAL", ""); s != "" {
		d, err := engine.ParseDuration(s)
		if err != nil {
			log.Error("RUNBOOKBOT_DRIFT_INTERVAL is not a duration; using 10m", "err", err)
		} else {
			interval = d
		}
	}
	if interval > 0 {
		w := &driftWatch{checker: driftChecker(registryOptions{logger: log}), catalog: eng.Catalog, metrics: met, notifier: notifier,
			channel: envOr("RUNBOOKBOT_DRIFT_CHANNEL", ""), interval: interval, clock: engine.SystemClock{}, log: log}
		met.Counter("runbookbot_drift_checks_total", "Drift checks completed", func() float64 { return float64(w.checks.Load()) })
		parts = append(parts, part(w.run))
	}
	return parts
}
