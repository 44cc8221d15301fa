// Package notify delivers the messages of runbook notification.send steps
// to chat, PagerDuty and generic webhooks. It implements engine.Notifier.
//
// Each entry of engine.Notification.Channels is routed by name:
//
//	slack, chat, #channel   the chat notifier given to New (the bot), called
//	                        once with those channels
//	pagerduty               a PagerDuty Events API v2 trigger event
//	pagerduty:resolve       resolves the execution's PagerDuty alert (so
//	                        does pagerduty with severity "resolved")
//	pagerduty:trigger       the same as pagerduty
//	webhook:NAME            the configured webhook NAME
//	webhook                 every configured webhook
//
// A notification with no channels goes to Config.DefaultChannels (default:
// chat). Unknown channel names fail the whole notification before anything
// is sent, with an error naming the known channels. Otherwise every channel
// is tried and the failures are joined.
//
// PagerDuty events carry the dedup key runbookbot-<executionId>, so a later
// resolve closes the alert the execution raised. Severities map onto
// PagerDuty's critical, error, warning and info (see PagerDutySeverity).
//
// Webhooks send a body rendered from an engine template over message,
// severity, runbook, executionId and channels, e.g.
//
//	body: '{"text": {{ message | json }}}'
//
// The routing key, webhook URLs and header values may be literal or refer
// to ${env:NAME} (an environment variable) or ${secret:NAME} (a secret from
// Config.Secrets); they are resolved for every delivery.
//
// Deliveries that answer 5xx or 429, or fail in transport, are retried
// (two retries by default) with doubling backoff, honouring Retry-After.
// Waiting uses Config.Sleep, or timers from Config.Clock, so tests move
// time instead of waiting for it.
//
// Errors and logs name the channel, the method, the URL's scheme and host
// and the response status; they never contain the routing key, header
// values, the URL's path or query, or anything resolved from a reference.
// Response text quoted in errors is scrubbed of those values.
package notify

import (
	"context"
	"errors"
	"fmt"
	"github.com/runbookbot/runbookbot/integrations/secrets"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Defaults for Config fields left zero.
const (
	DefaultPagerDutyURL = "https://events.pagerduty.com"
	DefaultRetries      = 2
	DefaultBackoff      = time.Second
	DefaultTimeout      = 10 * time.Second
)

// Config says where notifications go and how deliveries are retried.
type Config struct {
	// PagerDuty enables the pagerduty channel; nil leaves it off.
	PagerDuty *PagerDutyConfig
	// Webhooks are the webhook:NAME channels.
	Webhooks []WebhookConfig
	// DefaultChannels receive notifications that name no channel
	// (default: chat).
	DefaultChannels []string
	// Secrets resolves ${secret:NAME} references; nil makes them errors.
	Secrets engine.SecretSource
	// Client sends the HTTP requests; nil uses a client of its own that
	// does not follow redirects (a 3xx answer is a failed delivery).
	Client *http.Client
	// Timeout bounds each attempt (default 10s).
	Timeout time.Duration
	// Retries is how many times a delivery is retried after a 5xx, a 429
	// or a transport error: 0 means DefaultRetries, negative means never.
	Retries int
	// Backoff is the wait before the first retry, doubling after each
	// (default 1s). A longer Retry-After (up to a minute) wins.
	Backoff time.Duration
	// Clock times the waits between retries (default: the wall clock).
	Clock engine.Clock
	// Sleep waits d or until ctx ends; it overrides Clock for waits.
	Sleep func(ctx context.Context, d time.Duration) error
	// LookupEnv reads ${env:NAME} references and RoutingKeyEnv
	// (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Logger receives debug logs of deliveries; nil discards them.
	Logger *slog.Logger
}

// PagerDutyConfig reaches the PagerDuty Events API v2. Exactly one of
// RoutingKey, RoutingKeyEnv and RoutingKeySecret is set.
type PagerDutyConfig struct {
	// URL is the Events API base URL (default DefaultPagerDutyURL); events
	// are posted to URL/v2/enqueue.
	URL string `yaml:"url"`
	// RoutingKey is the integration key, literal or a ${env:} / ${secret:}
	// reference.
	RoutingKey string `yaml:"routingKey"`
	// RoutingKeyEnv names an environment variable holding the key.
	RoutingKeyEnv string `yaml:"routingKeyEnv"`
	// RoutingKeySecret names a secret (from Config.Secrets) holding the key.
	RoutingKeySecret string `yaml:"routingKeySecret"`
	// Source is the event's payload.source (default "runbookbot").
	Source string `yaml:"source"`
}

// WebhookConfig is one generic webhook, the channel webhook:Name.
type WebhookConfig struct {
	// Name is how runbooks refer to it.
	Name string `yaml:"name"`
	// URL receives the request; it may be a ${env:} or ${secret:}
	// reference (chat webhook URLs are credentials).
	URL string `yaml:"url"`
	// Method is POST (the default), PUT or PATCH.
	Method string `yaml:"method"`
	// Headers are sent with every request; values may be references.
	Headers map[string]string `yaml:"headers"`
	// Body is a template over message, severity, runbook, executionId and
	// channels; empty sends those five as a JSON object.
	Body string `yaml:"body"`
}

// Notifier routes notifications to chat, PagerDuty and webhooks.
type Notifier struct {
	cfg      Config
	chat     engine.Notifier
	log      *slog.Logger
	pd       *pagerDuty
	hooks    map[string]*webhook
	hookList []*webhook
	defaults []string
}

var _ engine.Notifier = (*Notifier)(nil)

// New returns a Notifier. chat handles the slack, chat and #channel
// channels; it may be nil when none are used. Configuration problems that
// Config.Validate reports (a bad body template, say) surface as errors from
// Notify for the channels they affect.
func New(cfg Config, chat engine.Notifier) *Notifier {
	if cfg.Client == nil {
		// Redirects are not followed: they would carry the routing key
		// and webhook headers to wherever the service points.
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Clock == nil {
		cfg.Clock = engine.SystemClock{}
	}
	if cfg.LookupEnv == nil {
		cfg.LookupEnv = os.LookupEnv
	}
	n := &Notifier{cfg: cfg, chat: chat, log: cfg.Logger, hooks: map[string]*webhook{}}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Sleep == nil {
		n.cfg.Sleep = n.clockSleep
	}
	if cfg.PagerDuty != nil {
		n.pd = newPagerDuty(*cfg.PagerDuty)
	}
	for _, wc := range cfg.Webhooks {
		if _, dup := n.hooks[wc.Name]; dup {
			continue
		}
		w := newWebhook(wc)
		n.hooks[wc.Name] = w
		n.hookList = append(n.hookList, w)
	}
	n.defaults = cfg.DefaultChannels
	if len(n.defaults) == 0 {
		n.defaults = []string{"chat"}
	}
	return n
}

// clockSleep waits d on the configured clock.
func (n *Notifier) clockSleep(ctx context.Context, d time.Duration) error {
	t := n.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C():
		return nil
	}
}

// route is where one notification goes.
type route struct {
	chat     []string
	pdAction string // "", "trigger" or "resolve"
	hooks    []*webhook
}

// Known lists the channel names this Notifier accepts, for help texts.
func (n *Notifier) Known() []string {
	out := []string{"slack", "chat", "#<channel>"}
	if n.pd != nil {
		out = append(out, "pagerduty", "pagerduty:resolve")
	}
	if len(n.hookList) > 0 {
		out = append(out, "webhook")
	}
	names := make([]string, 0, len(n.hookList))
	for _, w := range n.hookList {
		names = append(names, "webhook:"+w.cfg.Name)
	}
	sort.Strings(names)
	return append(out, names...)
}

// plan sorts channels into the notifiers that deliver them. It fails on
// the first unknown or unconfigured channel.
func (n *Notifier) plan(channels []string, severity string) (route, error) {
	var r route
	seenHook := map[*webhook]bool{}
	addHook := func(w *webhook) {
		if !seenHook[w] {
			seenHook[w] = true
			r.hooks = append(r.hooks, w)
		}
	}
	for _, raw := range channels {
		ch := strings.TrimSpace(raw)
		lower := strings.ToLower(ch)
		switch {
		case lower == "slack" || lower == "chat" || (strings.HasPrefix(ch, "#") && len(ch) > 1):
			r.chat = append(r.chat, ch)
		case lower == "pagerduty" || strings.HasPrefix(lower, "pagerduty:"):
			if n.pd == nil {
				return route{}, fmt.Errorf("channel %q: PagerDuty is not configured (add pagerduty with a routing key to the notify config)", ch)
			}
			action, err := pdAction(lower, severity)
			if err != nil {
				return route{}, fmt.Errorf("channel %q: %w", ch, err)
			}
			// One event per notification: resolve wins over trigger.
			if action == "resolve" || r.pdAction == "" {
				r.pdAction = action
			}
		case lower == "webhook":
			if len(n.hookList) == 0 {
				return route{}, fmt.Errorf("channel %q: no webhooks are configured", ch)
			}
			for _, w := range n.hookList {
				addHook(w)
			}
		case strings.HasPrefix(lower, "webhook:"):
			name := strings.TrimSpace(ch[len("webhook:"):])
			w := n.hooks[name]
			if w == nil {
				return route{}, fmt.Errorf("unknown webhook %q (known channels: %s)", name, strings.Join(n.Known(), ", "))
			}
			addHook(w)
		default:
			return route{}, fmt.Errorf("unknown notification channel %q (known channels: %s)", ch, strings.Join(n.Known(), ", "))
		}
	}
	return r, nil
}

// Notify delivers msg to each of its channels (or the default channels).
// It returns the joined errors of the deliveries that failed.
func (n *Notifier) Notify(ctx context.Context, msg engine.Notification) error {
	channels := msg.Channels
	if len(channels) == 0 {
		channels = n.defaults
	}
	r, err := n.plan(channels, msg.Severity)
	if err != nil {
		return err
	}
	var errs []error
	if len(r.chat) > 0 {
		if n.chat == nil {
			errs = append(errs, fmt.Errorf("chat (%s): no chat notifier is configured", strings.Join(r.chat, ", ")))
		} else {
			m := msg
			m.Channels = r.chat
			if err := n.chat.Notify(ctx, m); err != nil {
				errs = append(errs, fmt.Errorf("chat: %w", err))
			}
		}
	}
	if r.pdAction != "" {
		if err := n.sendPagerDuty(ctx, msg, r.pdAction); err != nil {
			errs = append(errs, err)
		}
	}
	for _, w := range r.hooks {
		if err := n.sendWebhook(ctx, w, msg, channels); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// resolver expands ${env:NAME} and ${secret:NAME} references and remembers
// every value it produced, so they can be scrubbed from error text.
type resolver struct {
	n         *Notifier
	sensitive []string
}

// expand replaces the references in s. Errors name the variable or
// secret, never a value.
func (r *resolver) expand(ctx context.Context, s string) (string, error) {
	out, produced, err := secrets.ExpandRefs(ctx, s, r.n.cfg.Secrets, r.n.cfg.LookupEnv)
	r.sensitive = append(r.sensitive, produced...)
	return out, err
}

// secretString reads a string secret from Config.Secrets.
func (n *Notifier) secretString(ctx context.Context, name string) (string, error) {
	if n.cfg.Secrets == nil {
		return "", fmt.Errorf("secret %q: no secret source is configured", name)
	}
	v, err := n.cfg.Secrets.Secret(ctx, name)
	if err != nil {
		return "", fmt.Errorf("secret %q: %w", name, err)
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("secret %q is not a single non-empty value", name)
	}
	return s, nil
}
