package notify

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/runbookbot/runbookbot/integrations/secrets"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/runbookbot/runbookbot/engine"
)

// fileConfig is the YAML form of Config.
type fileConfig struct {
	PagerDuty       *PagerDutyConfig `yaml:"pagerduty"`
	Webhooks        []WebhookConfig  `yaml:"webhooks"`
	DefaultChannels []string         `yaml:"defaultChannels"`
	Timeout         string           `yaml:"timeout"`
	Retries         *int             `yaml:"retries"`
	Backoff         string           `yaml:"backoff"`
}

// LoadConfig reads a YAML file of the form
//
//	pagerduty:                      # optional
//	  routingKeyEnv: PAGERDUTY_ROUTING_KEY   # or routingKey, routingKeySecret
//	  url: https://events.pagerduty.com      # optional
//	  source: runbookbot                     # optional
//	webhooks:                       # optional
//	  - name: ops
//	    url: https://hooks.example/x         # or ${secret:opsWebhook}
//	    method: POST                         # optional
//	    headers: {X-Token: "${env:OPS_TOKEN}"}
//	    body: '{"text": {{ message | json }}}'
//	defaultChannels: [chat]         # optional
//	timeout: 10s                    # optional, per attempt
//	retries: 2                      # optional; 0 turns retries off
//	backoff: 1s                     # optional
//
// Unknown keys are errors. The result is validated (see Config.Validate);
// the caller sets Secrets, Client, Clock and Logger.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("notify config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("notify config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig is LoadConfig for YAML already in memory.
func ParseConfig(data []byte) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the file is empty")
		}
		return Config{}, yamlError(err)
	}
	cfg := Config{PagerDuty: fc.PagerDuty, Webhooks: fc.Webhooks, DefaultChannels: fc.DefaultChannels}
	var err error
	if cfg.Timeout, err = parseDuration("timeout", fc.Timeout); err != nil {
		return Config{}, err
	}
	if cfg.Backoff, err = parseDuration("backoff", fc.Backoff); err != nil {
		return Config{}, err
	}
	if fc.Retries != nil {
		switch r := *fc.Retries; {
		case r < 0:
			return Config{}, errors.New("retries is negative")
		case r == 0:
			cfg.Retries = -1
		default:
			cfg.Retries = r
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// yamlError keeps YAML errors' line numbers but drops quoted values,
// which could be credentials written in the wrong place.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			lines[i] = quotedValue.ReplaceAllString(e, "$1")
		}
		return errors.New(strings.Join(lines, "; "))
	}
	return errors.New(quotedValue.ReplaceAllString(err.Error(), "$1"))
}

// quotedValue is how yaml.v3 quotes values in its errors: !!str `value`.
var quotedValue = regexp.MustCompile("(!!\\w+) `[^`]*`")

func parseDuration(what, s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	d, err := engine.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", what, err)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative", what)
	}
	return d, nil
}

// Validate checks the configuration: the PagerDuty URL and that exactly
// one routing key source is set; webhook names (present, unique), URLs,
// methods, header names and body templates; the default channels; and
// that durations are not negative. Errors never quote routing keys,
// header values or URLs.
func (c Config) Validate() error {
	var errs []error
	if pd := c.PagerDuty; pd != nil {
		if pd.URL != "" {
			if err := checkURL(pd.URL); err != nil {
				errs = append(errs, fmt.Errorf("pagerduty.%w", err))
			}
		}
		set := 0
		for _, s := range []string{pd.RoutingKey, pd.RoutingKeyEnv, pd.RoutingKeySecret} {
			if strings.TrimSpace(s) != "" {
				set++
			}
		}
		switch set {
		case 0:
			errs = append(errs, errors.New("pagerduty: set one of routingKey, routingKeyEnv or routingKeySecret"))
		case 1:
		default:
			errs = append(errs, errors.New("pagerduty: routingKey, routingKeyEnv and routingKeySecret are exclusive"))
		}
		for _, kind := range secrets.EmptyRefs(pd.RoutingKey) {
			errs = append(errs, fmt.Errorf("pagerduty.routingKey: ${%s:} names nothing", kind))
		}
	}
	seen := map[string]bool{}
	for i, w := range c.Webhooks {
		if err := w.validate(); err != nil {
			errs = append(errs, fmt.Errorf("webhooks[%d]: %w", i, err))
			continue
		}
		if seen[w.Name] {
			errs = append(errs, fmt.Errorf("webhooks[%d]: name %q is used twice", i, w.Name))
		}
		seen[w.Name] = true
		if w.Body != "" {
			if _, err := parseBody(w.Body); err != nil {
				errs = append(errs, fmt.Errorf("webhooks[%d] (%s): %w", i, w.Name, err))
			}
		}
	}
	if len(c.DefaultChannels) > 0 {
		if _, err := New(c, nil).plan(c.DefaultChannels, ""); err != nil {
			errs = append(errs, fmt.Errorf("defaultChannels: %w", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout is negative"))
	}
	if c.Backoff < 0 {
		errs = append(errs, errors.New("backoff is negative"))
	}
	return errors.Join(errs...)
}
