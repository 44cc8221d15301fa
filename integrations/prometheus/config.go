// Package prometheus supplies the live `metrics` root of runbook
// conditions (`metrics.podMemoryPercent < 80`) from a Prometheus server.
//
// Each metric name maps to a PromQL template whose {{ }} placeholders are
// rendered against the execution's parameters and state, e.g.
//
//	podMemoryPercent: >-
//	  max(container_memory_working_set_bytes{namespace="{{ namespace }}",pod="{{ podName }}"}
//	  / container_spec_memory_limit_bytes{namespace="{{ namespace }}",pod="{{ podName }}"}) * 100
//
// String values are escaped for PromQL double-quoted strings as they are
// inserted. The rendered query runs as an instant query
// (/api/v1/query) and must give exactly one sample. When the execution
// variables have a window (rollback triggers with `window: 5m`), the query
// is evaluated as avg_over_time((QUERY)[5m:]).
package prometheus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/runbookbot/runbookbot/engine"
)

// Config is where Prometheus is and which queries the metric names run.
type Config struct {
	// URL is the server's base URL (http://prometheus:9090, or a prefix
	// such as https://thanos.example/prometheus).
	URL string
	// Queries maps metric names to PromQL templates.
	Queries map[string]string
	// Headers are sent with every query (e.g. Authorization for a managed
	// Prometheus). They never appear in errors or logs.
	Headers map[string]string
	// Client sends the queries; nil uses a client of its own.
	Client *http.Client
	// Timeout bounds each query, and is passed to Prometheus as its query
	// timeout (default 10s).
	Timeout time.Duration
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// fileConfig is the YAML form of Config.
type fileConfig struct {
	URL     string            `yaml:"url"`
	Timeout string            `yaml:"timeout"`
	Headers map[string]string `yaml:"headers"`
	Queries map[string]string `yaml:"queries"`
}

// LoadConfig reads a YAML file of the form
//
//	url: http://prometheus:9090
//	timeout: 10s            # optional
//	headers: {}             # optional
//	queries:
//	  podMemoryPercent: max(...)
//
// Unknown keys are errors. The result is validated (see Config.Validate).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("prometheus config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("prometheus config %s: the file is empty", path)
		}
		return Config{}, fmt.Errorf("prometheus config %s: %v", path, err)
	}
	cfg := Config{URL: fc.URL, Queries: fc.Queries, Headers: fc.Headers}
	if fc.Timeout != "" {
		if cfg.Timeout, err = engine.ParseDuration(fc.Timeout); err != nil {
			return Config{}, fmt.Errorf("prometheus config %s: timeout: %v", path, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("prometheus config %s: %w", path, err)
	}
	return cfg, nil
}

var metricName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the URL, the metric names and that every query
// template parses (with the built-in template filters).
func (c Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url must be an http(s) URL such as http://prometheus:9090")
	}
	if len(c.Queries) == 0 {
		return errors.New("queries: at least one metric is required")
	}
	for _, name := range sortedNames(c.Queries) {
		if !metricName.MatchString(name) {
			return fmt.Errorf("queries: %q is not a valid metric name (letters, digits and _)", name)
		}
		if strings.TrimSpace(c.Queries[name]) == "" {
			return fmt.Errorf("queries.%s is empty", name)
		}
		if _, err := engine.ParseTemplate(c.Queries[name], engine.BuiltinFilters()); err != nil {
			return fmt.Errorf("queries.%s: %v", name, err)
		}
	}
	if c.Timeout < 0 {
		return errors.New("timeout is negative")
	}
	return nil
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// shownURL is the server URL for messages, without credentials.
func shownURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery, c.Fragment = "", ""
	return c.String()
}
