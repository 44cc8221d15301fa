package incident

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/runbookbot/runbookbot/integrations/secrets"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Provider names with a meaning of their own in Config.Default and
// Config.Runbooks.
const (
	// None turns the timeline off for a runbook.
	None = "none"
	// PagerDutyName is the name of the pagerduty provider.
	PagerDutyName = "pagerduty"
)

// DefaultPagerDutyAPI is PagerDuty's REST API v2.
const DefaultPagerDutyAPI = "https://api.pagerduty.com"

// DefaultEscalationLevel is the level a failed remediation escalates to.
const DefaultEscalationLevel = 2

// Config says which incident system each runbook's executions are written
// to. It is read from YAML (ParseConfig):
//
//	pagerduty:
//	  url: https://api.pagerduty.com   # optional
//	  token: ${secret:pagerdutyToken}  # REST API token: literal, ${env:X} or ${secret:X}
//	  from: runbookbot@example.com     # a PagerDuty user's email (the From header)
//	  serviceId: PSERVIC               # where incidents are created
//	  escalationPolicyId: PPOLICY      # optional, for created incidents
//	  urgency: high                    # optional, for created incidents
//	  escalationLevel: 2               # optional, where failures escalate to
//	webhooks:
//	  - name: ops
//	    url: ${secret:incidentHook}    # or a literal URL
//	    headers: {Authorization: "Bearer ${env:OPS_TOKEN}"}
//	default: pagerduty                 # provider for runbooks not listed (default none)
//	runbooks:                          # per runbook: a provider name, or none
//	  example-echo: none
//	  disk-cleanup-remediation: ops
//	create: true                       # create incidents none is found for (default true)
//
// Unknown keys are errors.
type Config struct {
	PagerDuty *PagerDutyConfig `yaml:"pagerduty"`
	Webhooks  []WebhookConfig  `yaml:"webhooks"`
	Default   string           `yaml:"default"`
	Runbooks  map[string]string
	Create    bool
}

// PagerDutyConfig reaches PagerDuty's REST API v2.
type PagerDutyConfig struct {
	URL                string `yaml:"url"`
	Token              string `yaml:"token"`
	From               string `yaml:"from"`
	ServiceID          string `yaml:"serviceId"`
	EscalationPolicyID string `yaml:"escalationPolicyId"`
	Urgency            string `yaml:"urgency"`
	EscalationLevel    int    `yaml:"escalationLevel"`
}

// WebhookConfig is a generic incident webhook, the provider Name.
type WebhookConfig struct {
	Name    string            `yaml:"name"`
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
}

type fileConfig struct {
	PagerDuty *PagerDutyConfig  `yaml:"pagerduty"`
	Webhooks  []WebhookConfig   `yaml:"webhooks"`
	Default   string            `yaml:"default"`
	Runbooks  map[string]string `yaml:"runbooks"`
	Create    *bool             `yaml:"create"`
}

// LoadConfig reads the YAML file at path (see Config).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("incident config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("incident config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig reads Config from YAML and validates it.
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
	c := Config{PagerDuty: fc.PagerDuty, Webhooks: fc.Webhooks, Default: strings.TrimSpace(fc.Default), Runbooks: fc.Runbooks, Create: true}
	if fc.Create != nil {
		c.Create = *fc.Create
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// quotedValue is how yaml.v3 quotes values in its errors; they are dropped
// because a token written in the wrong place would be quoted.
var quotedValue = regexp.MustCompile("(!!\\w+) `[^`]*`")

func yamlError(err error) error {
	return errors.New(quotedValue.ReplaceAllString(err.Error(), "$1"))
}

// Names lists the configured providers.
func (c Config) Names() []string {
	var out []string
	if c.PagerDuty != nil {
		out = append(out, PagerDutyName)
	}
	for _, w := range c.Webhooks {
		out = append(out, w.Name)
	}
	sort.Strings(out)
	return out
}

// ProviderFor returns the provider name for a runbook, or "" when its
// executions have no timeline.
func (c Config) ProviderFor(runbook string) string {
	p, ok := c.Runbooks[runbook]
	if !ok {
		p = c.Default
	}
	p = strings.TrimSpace(p)
	if p == None {
		return ""
	}
	return p
}

// Validate checks URLs, that the PagerDuty token, sender and service are
// set, webhook names and header names, and that every provider named by
// default and runbooks is configured. Errors never quote a token, a URL or
// a header value.
func (c Config) Validate() error {
	var errs []error
	known := map[string]bool{}
	if pd := c.PagerDuty; pd != nil {
		known[PagerDutyName] = true
		if pd.URL != "" && !secrets.HasRefs(pd.URL) {
			if err := checkURL(pd.URL); err != nil {
				errs = append(errs, fmt.Errorf("pagerduty.url: %w", err))
			}
		}
		if strings.TrimSpace(pd.Token) == "" {
			errs = append(errs, errors.New("pagerduty.token is required (a REST API token, e.g. ${secret:pagerdutyToken} or ${env:PAGERDUTY_TOKEN})"))
		}
		if !strings.Contains(pd.From, "@") {
			errs = append(errs, errors.New("pagerduty.from must be the email of a PagerDuty user (sent as the From header)"))
		}
		if strings.TrimSpace(pd.ServiceID) == "" {
			errs = append(errs, errors.New("pagerduty.serviceId is required (the service incidents are created on)"))
		}
		switch pd.Urgency {
		case "", "high", "low":
		default:
			errs = append(errs, fmt.Errorf("pagerduty.urgency must be high or low, not %q", pd.Urgency))
		}
		if pd.EscalationLevel < 0 {
			errs = append(errs, errors.New("pagerduty.escalationLevel is negative"))
		}
	}
	for i, w := range c.Webhooks {
		switch {
		case strings.TrimSpace(w.Name) == "":
			errs = append(errs, fmt.Errorf("webhooks[%d]: name is required", i))
			continue
		case w.Name == None || w.Name == PagerDutyName:
			errs = append(errs, fmt.Errorf("webhooks[%d]: the name %q is reserved", i, w.Name))
		case known[w.Name]:
			errs = append(errs, fmt.Errorf("webhooks[%d]: name %q is used twice", i, w.Name))
		}
		known[w.Name] = true
		if strings.TrimSpace(w.URL) == "" {
			errs = append(errs, fmt.Errorf("webhooks[%d] (%s): url is required", i, w.Name))
		} else if !secrets.HasRefs(w.URL) {
			if err := checkURL(w.URL); err != nil {
				errs = append(errs, fmt.Errorf("webhooks[%d] (%s): url: %w", i, w.Name, err))
			}
		}
		for k := range w.Headers {
			if !validHeaderName(k) {
				errs = append(errs, fmt.Errorf("webhooks[%d] (%s): %q is not a valid header name", i, w.Name, k))
			}
		}
	}
	check := func(where, name string) {
		name = strings.TrimSpace(name)
		if name == "" || name == None || known[name] {
			return
		}
		errs = append(errs, fmt.Errorf("%s: provider %q is not configured (configured: %s)", where, name, strings.Join(append(c.Names(), None), ", ")))
	}
	check("default", c.Default)
	names := make([]string, 0, len(c.Runbooks))
	for rb := range c.Runbooks {
		names = append(names, rb)
	}
	sort.Strings(names)
	for _, rb := range names {
		check("runbooks."+rb, c.Runbooks[rb])
	}
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	return nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}
