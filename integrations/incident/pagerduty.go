package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PagerDuty writes timelines through PagerDuty's REST API v2: incidents are
// found by incident_key (GET /incidents), created on the configured service
// (POST /incidents), entries are notes (POST /incidents/{id}/notes),
// resolving and escalating are PUT /incidents/{id} with status resolved
// and a resolution, or escalation_level. Requests carry
// "Authorization: Token token=…", the v2 Accept header and, where
// PagerDuty requires it, From.
type PagerDuty struct {
	cfg    PagerDutyConfig
	base   string
	client *http.Client
	refs   refs
}

var _ Provider = (*PagerDuty)(nil)

// PagerDuty error codes the provider branches on.
const (
	pdCodeAlreadyResolved = 1001
	pdCodeRateLimited     = 2020
)

// NewPagerDuty returns the provider for cfg. secrets resolves
// ${secret:NAME} references in the token; client may be nil.
func NewPagerDuty(cfg PagerDutyConfig, secrets Secrets, client *http.Client) *PagerDuty {
	base := strings.TrimRight(strings.TrimSpace(cfg.URL), "/")
	if base == "" {
		base = DefaultPagerDutyAPI
	}
	if cfg.EscalationLevel == 0 {
		cfg.EscalationLevel = DefaultEscalationLevel
	}
	if client == nil {
		// Redirects would carry the token elsewhere.
		client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &PagerDuty{cfg: cfg, base: base, client: client, refs: refs{secrets: secrets}}
}

// pdIncident is the part of PagerDuty's incident object the provider reads.
type pdIncident struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	IncidentKey string `json:"incident_key"`
	HTMLURL     string `json:"html_url"`
}

type pdErrorBody struct {
	Error struct {
		Message string   `json:"message"`
		Code    int      `json:"code"`
		Errors  []string `json:"errors"`
	} `json:"error"`
}

// Attach finds or creates the incident.
func (p *PagerDuty) Attach(ctx context.Context, a Attachment) (Incident, error) {
	if a.ID != "" {
		var out struct {
			Incident pdIncident `json:"incident"`
		}
		if err := p.do(ctx, "get incident", http.MethodGet, "/incidents/"+url.PathEscape(a.ID), nil, false, &out); err != nil {
			return Incident{}, err
		}
		return Incident{ID: out.Incident.ID, Key: out.Incident.IncidentKey, URL: out.Incident.HTMLURL}, nil
	}
	if inc, ok, err := p.find(ctx, a.Key); err != nil || ok {
		return inc, err
	}
	if !a.Create {
		return Incident{}, &Error{Provider: PagerDutyName, Op: "find incident", Message: "no open incident has this key and creating incidents is off"}
	}
	body := map[string]any{
		"type":         "incident",
		"title":        truncate(a.Title, 1024),
		"service":      map[string]string{"id": p.cfg.ServiceID, "type": "service_reference"},
		"incident_key": a.Key,
		"body":         map[string]string{"type": "incident_body", "details": a.Details},
	}
	if p.cfg.Urgency != "" {
		body["urgency"] = p.cfg.Urgency
	}
	if p.cfg.EscalationPolicyID != "" {
		body["escalation_policy"] = map[string]string{"id": p.cfg.EscalationPolicyID, "type": "escalation_policy_reference"}
	}
	var out struct {
		Incident pdIncident `json:"incident"`
	}
	err := p.do(ctx, "create incident", http.MethodPost, "/incidents", map[string]any{"incident": body}, true, &out)
	if err != nil {
		// An open incident with this key appeared since we looked (another
		// writer, or our own earlier attempt whose answer was lost).
		var pe *Error
		if errors.As(err, &pe) && pe.Status == http.StatusBadRequest {
			if inc, ok, ferr := p.find(ctx, a.Key); ferr == nil && ok {
				return inc, nil
			}
		}
		return Incident{}, err
	}
	return Incident{ID: out.Incident.ID, Key: out.Incident.IncidentKey, URL: out.Incident.HTMLURL, Created: true}, nil
}

// find looks for an open incident with the key.
func (p *PagerDuty) find(ctx context.Context, key string) (Incident, bool, error) {
	if key == "" {
		return Incident{}, false, nil
	}
	q := url.Values{}
	q.Set("incident_key", key)
	q.Add("statuses[]", "triggered")
	q.Add("statuses[]", "acknowledged")
	var out struct {
		Incidents []pdIncident `json:"incidents"`
	}
	if err := p.do(ctx, "list incidents", http.MethodGet, "/incidents?"+q.Encode(), nil, false, &out); err != nil {
		return Incident{}, false, err
	}
	for _, i := range out.Incidents {
		if i.IncidentKey == key {
			return Incident{ID: i.ID, Key: key, URL: i.HTMLURL}, true, nil
		}
	}
	return Incident{}, false, nil
}

// Note adds a note.
func (p *PagerDuty) Note(ctx context.Context, inc Incident, e Entry) error {
	body := map[string]any{"note": map[string]string{"content": e.Text()}}
	return p.do(ctx, "add note", http.MethodPost, "/incidents/"+url.PathEscape(inc.ID)+"/notes", body, true, nil)
}

// Noted looks for the marker among the incident's notes.
func (p *PagerDuty) Noted(ctx context.Context, inc Incident, marker string) (bool, bool, error) {
	var out struct {
		Notes []struct {
			Content string `json:"content"`
		} `json:"notes"`
	}
	if err := p.do(ctx, "list notes", http.MethodGet, "/incidents/"+url.PathEscape(inc.ID)+"/notes", nil, false, &out); err != nil {
		return false, true, err
	}
	want := markerText(marker)
	for _, n := range out.Notes {
		if strings.Contains(n.Content, want) {
			return true, true, nil
		}
	}
	return false, true, nil
}

// Resolve sets the incident resolved with a resolution naming the
// execution.
func (p *PagerDuty) Resolve(ctx context.Context, inc Incident, e Entry) error {
	res := fmt.Sprintf("Resolved by runbookbot (resolution_type: automated): runbook %s, execution %s succeeded.", e.Runbook, e.ExecutionID)
	body := map[string]any{"incident": map[string]any{"type": "incident_reference", "status": "resolved", "resolution": res}}
	err := p.do(ctx, "resolve incident", http.MethodPut, "/incidents/"+url.PathEscape(inc.ID), body, true, nil)
	var pe *Error
	if errors.As(err, &pe) && pe.Code == pdCodeAlreadyResolved {
		return nil
	}
	return err
}

// Escalate moves the incident to the configured escalation level.
func (p *PagerDuty) Escalate(ctx context.Context, inc Incident, _ Entry) error {
	body := map[string]any{"incident": map[string]any{"type": "incident_reference", "escalation_level": p.cfg.EscalationLevel}}
	return p.do(ctx, "escalate incident", http.MethodPut, "/incidents/"+url.PathEscape(inc.ID), body, true, nil)
}

// do sends one request and decodes the answer into out (when not nil).
func (p *PagerDuty) do(ctx context.Context, op, method, path string, body any, from bool, out any) error {
	var sensitive []string
	token, err := p.refs.expand(ctx, strings.TrimSpace(p.cfg.Token), &sensitive)
	if err != nil {
		return &Error{Provider: PagerDutyName, Op: op, Message: "token: " + err.Error(), Retryable: true}
	}
	sensitive = append(sensitive, token)
	base, err := p.refs.expand(ctx, p.base, &sensitive)
	if err != nil {
		return &Error{Provider: PagerDutyName, Op: op, Message: "url: " + err.Error(), Retryable: true}
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &Error{Provider: PagerDutyName, Op: op, Message: "encoding the request failed"}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return &Error{Provider: PagerDutyName, Op: op, Message: "bad URL " + shownURL(base)}
	}
	req.Header.Set("Authorization", "Token token="+token)
	req.Header.Set("Accept", "application/vnd.pagerduty+json;version=2")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if from {
		req.Header.Set("From", p.cfg.From)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		msg := "request to " + shownURL(base) + " failed"
		if errors.Is(err, context.DeadlineExceeded) {
			msg += ": timeout"
		}
		return &Error{Provider: PagerDutyName, Op: op, Message: msg, Retryable: true}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return &Error{Provider: PagerDutyName, Op: op, Status: resp.StatusCode, Message: "the answer is not the JSON PagerDuty sends", Retryable: true}
			}
		}
		return nil
	}
	return pdError(op, resp, data, sensitive)
}

// pdError reads PagerDuty's error object: {"error": {"message", "code",
// "errors"}}.
func pdError(op string, resp *http.Response, data []byte, sensitive []string) *Error {
	e := &Error{Provider: PagerDutyName, Op: op, Status: resp.StatusCode}
	var body pdErrorBody
	if json.Unmarshal(data, &body) == nil {
		e.Code = body.Error.Code
		msg := body.Error.Message
		if len(body.Error.Errors) > 0 {
			msg += ": " + strings.Join(body.Error.Errors, "; ")
		}
		e.Message = scrub(truncate(msg, 300), sensitive)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || e.Code == pdCodeRateLimited:
		e.Retryable = true
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("ratelimit-reset"))); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		} else if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout,
		resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		e.Retryable = true
	}
	return e
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
