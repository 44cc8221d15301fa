// Package alerts turns alert notifications into runbook decisions.
//
// It has three parts, all free of I/O:
//
//   - Parsers. ParseSlackMessage reads the message Prometheus Alertmanager
//     posts through a Slack incoming webhook (its slack_configs), with the
//     default templates or the common custom ones; ParseWebhook reads
//     Alertmanager's webhook JSON (version 4); ParseGeneric reads a plain
//     line such as "ALERT PodMemoryHigh firing namespace=staging value=93".
//     Each yields Alerts with a stable Fingerprint.
//   - Matching. A Matcher applies the mappings file (engine.MappingsConfig)
//     and each runbook's own trigger conditions to an Alert and returns a
//     Decision: which runbook, with which parameters, whether to run it
//     automatically and, if not, why; for unmapped alerts, the defaults and
//     suggested runbooks.
//   - Dedup and storm control. A Tracker allows one automatic execution per
//     (alert, runbook) at a time and none during a cool-down after it, caps
//     concurrent automatic executions per runbook and queues the rest, and
//     remembers the chat thread each alert lives in.
//
// What the default Alertmanager Slack message carries: slack.default.title
// is "[FIRING:n] <group label values> (<other common label values>)" and
// slack.default.text is empty, so without a custom template the message has
// label values but not their names, and nothing per alert. Rules.KeyOrder
// names the title's values (the route's group_by, in Alertmanager's order:
// alertname first, then by name); values it cannot name are kept in
// Alert.Unkeyed.
package alerts

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"
)

// Alert statuses, as Alertmanager spells them.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Sources of an Alert.
const (
	SourceSlack   = "slack"        // a Slack message posted by Alertmanager
	SourceWebhook = "alertmanager" // Alertmanager's webhook JSON
	SourceText    = "text"         // a plain text line
)

// Alert is one alert instance, however it arrived.
type Alert struct {
	// Name is the alertname label.
	Name string `json:"name"`
	// Status is StatusFiring or StatusResolved.
	Status string `json:"status"`
	// Labels identify the alert; alertname is among them when known.
	Labels map[string]string `json:"labels"`
	// Annotations describe it (summary, description, runbook_url...).
	Annotations map[string]string `json:"annotations,omitempty"`
	// Value is the sample value that fired it, when the message shows one.
	Value string `json:"value,omitempty"`
	// Fingerprint identifies the alert across its firing and resolved
	// notifications: Alertmanager's own when it sends one, else
	// Fingerprint(Name, Labels), with the Unkeyed values hashed in too.
	Fingerprint string `json:"fingerprint"`
	// StartsAt and EndsAt are zero when the source does not say.
	StartsAt time.Time `json:"startsAt,omitzero"`
	EndsAt   time.Time `json:"endsAt,omitzero"`
	// GeneratorURL links to the expression in Prometheus.
	GeneratorURL string `json:"generatorURL,omitempty"`
	// Source is SourceSlack, SourceWebhook or SourceText.
	Source string `json:"source"`
	// Unkeyed are label values the message showed without their names (the
	// default title's common labels), kept for display and suggestions.
	Unkeyed []string `json:"unkeyed,omitempty"`
}

// Firing reports whether the alert is firing (anything but resolved).
func (a Alert) Firing() bool { return a.Status != StatusResolved }

// Fingerprint is a stable hash of an alert's identity: the alert name and
// its labels, sorted. It is 16 hex digits of a SHA-256, so the same alert
// seen firing and later resolved gets the same fingerprint.
func Fingerprint(name string, labels map[string]string) string {
	return fingerprint(name, labels, nil)
}

// fingerprint hashes name, labels and, after them, values shown without
// names, so that two default-template messages for the same alert name in
// different namespaces stay apart.
func fingerprint(name string, labels map[string]string, unkeyed []string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0xff})
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0xfe})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	for _, v := range unkeyed {
		h.Write([]byte{0xfd})
		h.Write([]byte(v))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// finish fills what every parser derives the same way: the alertname label
// and Name agree, the status is normalised, Value comes from a value
// annotation or label, and the fingerprint is computed if missing.
func (a *Alert) finish(source string) {
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	if a.Name == "" {
		a.Name = a.Labels["alertname"]
	}
	if a.Name != "" {
		a.Labels["alertname"] = a.Name
	}
	a.Status = normStatus(a.Status)
	if a.Value == "" {
		if v, ok := a.Annotations["value"]; ok {
			a.Value = v
		} else if v, ok := a.Labels["value"]; ok {
			a.Value = v
		}
	}
	if len(a.Annotations) == 0 {
		a.Annotations = nil
	}
	if a.Fingerprint == "" {
		a.Fingerprint = fingerprint(a.Name, a.Labels, a.Unkeyed)
	}
	a.Source = source
}

// normStatus maps the spellings of firing and resolved to the constants;
// anything else counts as firing.
func normStatus(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "resolved", "ok", "recovered", "good", "inactive":
		return StatusResolved
	}
	return StatusFiring
}

// cloneMap copies a string map; nil stays nil.
func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// validLabelName reports whether s is a Prometheus label name.
func validLabelName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// validAlertName reports whether s can be an alertname as rules write
// them (a metric-like identifier).
func validAlertName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == ':' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}
