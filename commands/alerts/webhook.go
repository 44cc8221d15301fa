package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Group is one Alertmanager notification: a group of alerts that share
// the route's group_by labels.
type Group struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	// TruncatedAlerts counts alerts Alertmanager left out (max_alerts).
	TruncatedAlerts int     `json:"truncatedAlerts"`
	Alerts          []Alert `json:"alerts"`
}

// Firing returns the group's firing alerts.
func (g Group) Firing() []Alert {
	var out []Alert
	for _, a := range g.Alerts {
		if a.Firing() {
			out = append(out, a)
		}
	}
	return out
}

// wireGroup is Alertmanager's webhook payload (version 4). Grafana's
// webhook contact point sends the same shape with version "1" and a values
// map per alert.
type wireGroup struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []wireAlert       `json:"alerts"`
}

type wireAlert struct {
	Status       string             `json:"status"`
	Labels       map[string]string  `json:"labels"`
	Annotations  map[string]string  `json:"annotations"`
	StartsAt     string             `json:"startsAt"`
	EndsAt       string             `json:"endsAt"`
	GeneratorURL string             `json:"generatorURL"`
	Fingerprint  string             `json:"fingerprint"`
	Values       map[string]float64 `json:"values"`
}

// ParseWebhook reads an Alertmanager webhook notification (JSON, version
// 4). Each alert keeps the fingerprint Alertmanager sent (or gets
// Fingerprint's when it sent none), its status (the group's when missing)
// and its Value from a "value" annotation or label. It fails on anything
// that is not such a payload, including one with no alerts.
func ParseWebhook(body []byte) (Group, error) {
	var w wireGroup
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return Group{}, fmt.Errorf("alertmanager webhook: %w", err)
	}
	if dec.More() {
		return Group{}, errors.New("alertmanager webhook: trailing data after the JSON object")
	}
	if len(w.Alerts) == 0 {
		return Group{}, errors.New("alertmanager webhook: no alerts in the payload")
	}
	if w.Version != "" {
		if _, err := strconv.Atoi(w.Version); err != nil {
			return Group{}, fmt.Errorf("alertmanager webhook: unknown version %q", w.Version)
		}
	}
	g := Group{
		Version: w.Version, GroupKey: w.GroupKey, Status: w.Status, Receiver: w.Receiver,
		GroupLabels: cloneMap(w.GroupLabels), CommonLabels: cloneMap(w.CommonLabels),
		CommonAnnotations: cloneMap(w.CommonAnnotations), ExternalURL: w.ExternalURL,
		TruncatedAlerts: w.TruncatedAlerts,
	}
	if g.Status != "" {
		g.Status = normStatus(g.Status)
	}
	for _, wa := range w.Alerts {
		a := Alert{
			Status:       firstNonEmpty(wa.Status, w.Status),
			Labels:       cloneMap(wa.Labels),
			Annotations:  cloneMap(wa.Annotations),
			StartsAt:     parseTime(wa.StartsAt),
			EndsAt:       parseTime(wa.EndsAt),
			GeneratorURL: wa.GeneratorURL,
			Fingerprint:  wa.Fingerprint,
		}
		if a.Labels == nil {
			a.Labels = cloneMap(w.CommonLabels)
		}
		if a.Labels["alertname"] == "" {
			a.Name = firstNonEmpty(w.GroupLabels["alertname"], w.CommonLabels["alertname"])
		}
		if len(wa.Values) == 1 && a.Annotations["value"] == "" && a.Labels["value"] == "" {
			for _, v := range wa.Values {
				a.Value = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
		a.finish(SourceWebhook)
		g.Alerts = append(g.Alerts, a)
	}
	return g, nil
}

// ParseGeneric reads alerts from plain text with DefaultRules: lines such
// as "ALERT PodMemoryHigh firing namespace=staging pod=api-1 value=93", an
// Alertmanager title line followed by details, or "key: value" lines.
func ParseGeneric(text string) ([]Alert, error) {
	return DefaultRules().ParseText(text)
}

// ParseText reads alerts from plain text (a chat message without
// attachments, an e-mail body). It returns ErrNotAlert when nothing names an
// alert.
func (r Rules) ParseText(text string) ([]Alert, error) {
	r = r.withDefaults()
	out := dedupe(r.parseText(text, SourceText))
	if len(out) == 0 {
		return nil, ErrNotAlert
	}
	return out, nil
}

// Summary is a one-line description of an alert for chat: name, status,
// value and labels (alertname left out), sorted.
func (a Alert) Summary() string {
	var b strings.Builder
	b.WriteString(a.Name)
	if a.Status == StatusResolved {
		b.WriteString(" (resolved)")
	}
	if a.Value != "" {
		b.WriteString(" value=" + a.Value)
	}
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(" " + k + "=" + a.Labels[k])
	}
	return b.String()
}
