package prometheus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Metrics answers the `metrics` root from Prometheus.
type Metrics struct {
	cfg     Config
	base    *url.URL // nil when cfg.URL does not parse
	baseErr error
	client  *http.Client
	log     *slog.Logger
	filters map[string]engine.FilterFunc
}

// New returns the metrics source for cfg. Configuration errors (see
// Config.Validate) surface when a metric is read.
func New(cfg Config) *Metrics {
	m := &Metrics{cfg: cfg, client: cfg.Client, log: cfg.Logger, filters: engine.BuiltinFilters()}
	if m.client == nil {
		m.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.cfg.Timeout <= 0 {
		m.cfg.Timeout = 10 * time.Second
	}
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	switch {
	case strings.TrimSpace(cfg.URL) == "":
		m.baseErr = errors.New("no Prometheus URL is configured")
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		m.baseErr = errors.New("the configured Prometheus URL is not an http(s) URL")
	default:
		u.Path = strings.TrimSuffix(u.Path, "/")
		m.base = u
	}
	return m
}

// Register makes m the registry's `metrics` resolver; query templates may
// use the registry's filters.
func (m *Metrics) Register(reg *engine.Registry) {
	m.filters = reg.Filters()
	reg.Resolver("metrics", m.Resolve)
}

// Register adds the `metrics` resolver for cfg to reg (New(cfg).Register).
func Register(reg *engine.Registry, cfg Config) {
	New(cfg).Register(reg)
}

// Resolve is an engine.ResolveFunc: it runs the query of each member name
// (every configured one when members is empty) and returns name → float64.
func (m *Metrics) Resolve(ctx context.Context, members []string, vars map[string]any) (any, error) {
	names := members
	if len(names) == 0 {
		names = sortedNames(m.cfg.Queries)
	}
	out := make(map[string]any, len(names))
	for _, name := range names {
		if _, done := out[name]; done {
			continue
		}
		v, err := m.Metric(ctx, name, vars)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// Metric renders and runs one named query.
func (m *Metrics) Metric(ctx context.Context, name string, vars map[string]any) (float64, error) {
	src, ok := m.cfg.Queries[name]
	if !ok {
		known := sortedNames(m.cfg.Queries)
		if len(known) == 0 {
			return 0, fmt.Errorf("no metric named %q: no Prometheus queries are configured", name)
		}
		return 0, fmt.Errorf("no metric named %q; configured metrics: %s", name, strings.Join(known, ", "))
	}
	q, err := m.render(ctx, name, src, vars)
	if err != nil {
		return 0, err
	}
	if w := strings.TrimSpace(engine.Stringify(vars["window"])); w != "" {
		d, err := engine.ParseDuration(w)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("metric %s: window %q is not a duration", name, w)
		}
		q = fmt.Sprintf("avg_over_time((%s)[%s:])", q, promDuration(d))
	}
	v, err := m.Query(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("metric %s: %w", name, err)
	}
	m.log.Debug("metric read", "metric", name, "value", v)
	return v, nil
}

// render fills a query template from the execution variables, escaping
// strings for PromQL. A variable the template needs but the execution
// lacks is an error, not an empty label value.
func (m *Metrics) render(ctx context.Context, name, src string, vars map[string]any) (string, error) {
	t, err := engine.ParseTemplate(src, m.filters)
	if err != nil {
		return "", fmt.Errorf("metric %s: bad query template: %v", name, err)
	}
	for _, r := range t.Refs() {
		if _, ok := vars[r.Root]; !ok {
			return "", fmt.Errorf("metric %s needs %q, which this execution does not have", name, r.Root)
		}
	}
	env := make(map[string]any, len(vars))
	for k, v := range vars {
		env[k] = escapeValue(v)
	}
	v, err := t.Render(ctx, env, m.filters)
	if err != nil {
		return "", fmt.Errorf("metric %s: rendering the query: %v", name, err)
	}
	return engine.Stringify(v), nil
}

var promString = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// escapeValue escapes the strings in v for a PromQL double-quoted string.
func escapeValue(v any) any {
	switch x := v.(type) {
	case string:
		return promString.Replace(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = escapeValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = escapeValue(e)
		}
		return out
	}
	return v
}

// promDuration formats d as a PromQL duration ("5m", "90s").
func promDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
