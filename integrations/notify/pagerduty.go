package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// PagerDuty's payload.summary limit, in characters.
const maxSummary = 1024

// pagerDuty is the configured Events API v2 endpoint.
type pagerDuty struct {
	cfg      PagerDutyConfig
	endpoint string
	shown    string
}

func newPagerDuty(c PagerDutyConfig) *pagerDuty {
	base := strings.TrimSpace(c.URL)
	if base == "" {
		base = DefaultPagerDutyURL
	}
	base = strings.TrimRight(base, "/")
	endpoint := base
	if !strings.HasSuffix(endpoint, "/v2/enqueue") {
		endpoint += "/v2/enqueue"
	}
	if c.Source == "" {
		c.Source = "runbookbot"
	}
	return &pagerDuty{cfg: c, endpoint: endpoint, shown: shownURL(endpoint)}
}

// pdEvent is an Events API v2 event.
type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"`
	DedupKey    string     `json:"dedup_key,omitempty"`
	Client      string     `json:"client,omitempty"`
	Payload     *pdPayload `json:"payload,omitempty"`
}

// pdPayload is the trigger event's payload.
type pdPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// pdAction reads the event action from a channel name ("pagerduty",
// "pagerduty:trigger", "pagerduty:resolve") and the severity.
func pdAction(lowerChannel, severity string) (string, error) {
	_, suffix, _ := strings.Cut(lowerChannel, ":")
	switch strings.TrimSpace(suffix) {
	case "":
		if s := strings.ToLower(strings.TrimSpace(severity)); s == "resolved" || s == "resolve" {
			return "resolve", nil
		}
		return "trigger", nil
	case "trigger":
		return "trigger", nil
	case "resolve":
		return "resolve", nil
	}
	return "", fmt.Errorf("PagerDuty channels are pagerduty, pagerduty:trigger and pagerduty:resolve")
}

// PagerDutySeverity maps a runbook severity onto PagerDuty's four:
// critical (critical, crit, fatal, emergency, page, sev1, p1), error
// (error, err, high, major, sev2, p2), warning (warning, warn, medium,
// moderate, minor, sev3, p3) and info (info, low, notice, informational,
// ok, success, sev4, p4, sev5, p5). Anything else, or nothing, is warning.
func PagerDutySeverity(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical", "crit", "fatal", "emergency", "page", "sev1", "p1":
		return "critical"
	case "error", "err", "high", "major", "sev2", "p2":
		return "error"
	case "warning", "warn", "medium", "moderate", "minor", "sev3", "p3":
		return "warning"
	case "info", "low", "notice", "informational", "ok", "success", "sev4", "p4", "sev5", "p5":
		return "info"
	}
	return "warning"
}

// DedupKey is the PagerDuty dedup key of an execution's alerts.
func DedupKey(executionID string) string { return "runbookbot-" + executionID }

// routingKey resolves the configured routing key. The resolver remembers
// it as sensitive.
func (n *Notifier) routingKey(ctx context.Context, r *resolver) (string, error) {
	c := n.pd.cfg
	switch {
	case c.RoutingKey != "":
		k, err := r.expand(ctx, c.RoutingKey)
		if err != nil {
			return "", fmt.Errorf("routing key: %w", err)
		}
		r.sensitive = append(r.sensitive, k)
		return strings.TrimSpace(k), nil
	case c.RoutingKeyEnv != "":
		k, ok := n.cfg.LookupEnv(c.RoutingKeyEnv)
		if !ok || strings.TrimSpace(k) == "" {
			return "", fmt.Errorf("routing key: environment variable %s is not set", c.RoutingKeyEnv)
		}
		r.sensitive = append(r.sensitive, k)
		return strings.TrimSpace(k), nil
	case c.RoutingKeySecret != "":
		k, err := n.secretString(ctx, c.RoutingKeySecret)
		if err != nil {
			return "", fmt.Errorf("routing key: %w", err)
		}
		r.sensitive = append(r.sensitive, k)
		return strings.TrimSpace(k), nil
	}
	return "", fmt.Errorf("no routing key is configured (set routingKey, routingKeyEnv or routingKeySecret)")
}

// pdEventFor builds the event for msg.
func (n *Notifier) pdEventFor(msg engine.Notification, action, key string) (*pdEvent, error) {
	ev := &pdEvent{RoutingKey: key, EventAction: action, Client: "runbookbot"}
	if msg.ExecutionID != "" {
		ev.DedupKey = DedupKey(msg.ExecutionID)
	}
	if action == "resolve" {
		if ev.DedupKey == "" {
			return nil, fmt.Errorf("cannot resolve a PagerDuty alert without an execution id")
		}
		return ev, nil
	}
	summary := strings.Join(strings.Fields(msg.Message), " ")
	if summary == "" {
		summary = "runbookbot notification"
		if msg.Runbook != "" {
			summary = "runbook " + msg.Runbook + ": notification"
		}
	}
	if r := []rune(summary); len(r) > maxSummary {
		summary = string(r[:maxSummary-1]) + "…"
	}
	details := map[string]any{"message": msg.Message}
	if msg.Runbook != "" {
		details["runbook"] = msg.Runbook
	}
	if msg.ExecutionID != "" {
		details["executionId"] = msg.ExecutionID
	}
	if msg.Severity != "" {
		details["severity"] = msg.Severity
	}
	if len(msg.Channels) > 0 {
		details["channels"] = msg.Channels
	}
	ev.Payload = &pdPayload{
		Summary:       summary,
		Source:        n.pd.cfg.Source,
		Severity:      PagerDutySeverity(msg.Severity),
		Timestamp:     n.cfg.Clock.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		CustomDetails: details,
	}
	return ev, nil
}

// sendPagerDuty posts one event.
func (n *Notifier) sendPagerDuty(ctx context.Context, msg engine.Notification, action string) error {
	r := &resolver{n: n}
	key, err := n.routingKey(ctx, r)
	if err != nil {
		return fmt.Errorf("pagerduty: %w", err)
	}
	ev, err := n.pdEventFor(msg, action, key)
	if err != nil {
		return fmt.Errorf("pagerduty: %w", err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("pagerduty: encoding the event: %v", err)
	}
	h := make(map[string][]string)
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json"}
	_, err = n.deliver(ctx, &request{
		channel: "pagerduty", method: "POST", url: n.pd.endpoint, shown: n.pd.shown,
		header: h, body: body, sensitive: r.sensitive,
	})
	if err != nil {
		return err
	}
	n.log.Debug("pagerduty event sent", "action", action, "dedupKey", ev.DedupKey, "execution", msg.ExecutionID)
	return nil
}
