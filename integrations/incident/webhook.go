package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook writes timelines to any HTTP endpoint: each operation is one
// POST of a JSON object
//
//	{"action": "attach" | "note" | "resolve" | "escalate",
//	 "incident": {"id": "...", "key": "..."},
//	 "execution_id": "...", "runbook": "...",
//	 "entry": {"marker", "entry_type", "timestamp", "title", "status", "details"},
//	 "status": "resolved" | "escalated",          (resolve, escalate)
//	 "resolution_type": "automated",              (resolve)
//	 "note": "Automated remediation failed, ..."} (escalate)
//
// with an Idempotency-Key header that is the same for every delivery of
// one operation, across retries and restarts. An attach answered with
// {"incident": {"id": "..."}} (or {"id": "..."}) names the incident later
// operations carry; otherwise its key is its id. 2xx is success; 429, 5xx
// and transport errors are retried (Retry-After honoured); other statuses
// drop the operation.
type Webhook struct {
	cfg    WebhookConfig
	client *http.Client
	refs   refs
}

var _ Provider = (*Webhook)(nil)

// NewWebhook returns the provider for cfg; client may be nil.
func NewWebhook(cfg WebhookConfig, secrets Secrets, client *http.Client) *Webhook {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Webhook{cfg: cfg, client: client, refs: refs{secrets: secrets}}
}

// EscalationNote is the seed's note on a failed remediation.
const EscalationNote = "Automated remediation failed, manual intervention required"

type hookIncident struct {
	ID  string `json:"id,omitempty"`
	Key string `json:"key,omitempty"`
}

type hookBody struct {
	Action         string       `json:"action"`
	Incident       hookIncident `json:"incident"`
	ExecutionID    string       `json:"execution_id"`
	Runbook        string       `json:"runbook"`
	Entry          *Entry       `json:"entry,omitempty"`
	Status         string       `json:"status,omitempty"`
	ResolutionType string       `json:"resolution_type,omitempty"`
	Note           string       `json:"note,omitempty"`
	Title          string       `json:"title,omitempty"`
	Details        string       `json:"details,omitempty"`
	Create         bool         `json:"create,omitempty"`
}

// Attach announces the execution; the receiver finds or creates the
// incident.
func (w *Webhook) Attach(ctx context.Context, a Attachment) (Incident, error) {
	key := a.Key
	inc := Incident{ID: a.ID, Key: key}
	if inc.ID == "" {
		inc.ID = key
	}
	var out struct {
		ID       string `json:"id"`
		Incident struct {
			ID string `json:"id"`
		} `json:"incident"`
	}
	body := hookBody{Action: "attach", Incident: hookIncident{ID: a.ID, Key: key}, ExecutionID: a.ExecutionID, Runbook: a.Runbook,
		Title: a.Title, Details: a.Details, Create: a.Create}
	if err := w.post(ctx, "attach", "attach:"+a.ExecutionID, body, &out); err != nil {
		return Incident{}, err
	}
	if out.Incident.ID != "" {
		inc.ID = out.Incident.ID
	} else if out.ID != "" {
		inc.ID = out.ID
	}
	return inc, nil
}

// Note posts an entry.
func (w *Webhook) Note(ctx context.Context, inc Incident, e Entry) error {
	return w.post(ctx, "note", e.Marker, hookBody{Action: "note", Incident: inc.ref(), ExecutionID: e.ExecutionID, Runbook: e.Runbook, Entry: &e}, nil)
}

// Noted cannot be answered by a webhook.
func (w *Webhook) Noted(context.Context, Incident, string) (bool, bool, error) {
	return false, false, nil
}

// Resolve posts the resolution.
func (w *Webhook) Resolve(ctx context.Context, inc Incident, e Entry) error {
	return w.post(ctx, "resolve", e.Marker, hookBody{Action: "resolve", Incident: inc.ref(), ExecutionID: e.ExecutionID, Runbook: e.Runbook,
		Entry: &e, Status: "resolved", ResolutionType: "automated"}, nil)
}

// Escalate posts the escalation with the seed's note.
func (w *Webhook) Escalate(ctx context.Context, inc Incident, e Entry) error {
	return w.post(ctx, "escalate", e.Marker, hookBody{Action: "escalate", Incident: inc.ref(), ExecutionID: e.ExecutionID, Runbook: e.Runbook,
		Entry: &e, Status: "escalated", Note: EscalationNote}, nil)
}

func (i Incident) ref() hookIncident { return hookIncident{ID: i.ID, Key: i.Key} }

func (w *Webhook) post(ctx context.Context, op, idem string, body hookBody, out any) error {
	name := w.cfg.Name
	var sensitive []string
	target, err := w.refs.expand(ctx, strings.TrimSpace(w.cfg.URL), &sensitive)
	if err != nil {
		return &Error{Provider: name, Op: op, Message: "url: " + err.Error(), Retryable: true}
	}
	sensitive = append(sensitive, urlParts(target)...)
	data, err := json.Marshal(body)
	if err != nil {
		return &Error{Provider: name, Op: op, Message: "encoding the request failed"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return &Error{Provider: name, Op: op, Message: "bad URL " + shownURL(target)}
	}
	for k, v := range w.cfg.Headers {
		val, err := w.refs.expand(ctx, v, &sensitive)
		if err != nil {
			return &Error{Provider: name, Op: op, Message: "header " + k + ": " + err.Error(), Retryable: true}
		}
		sensitive = append(sensitive, val)
		req.Header.Set(k, val)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", idem)
	resp, err := w.client.Do(req)
	if err != nil {
		return &Error{Provider: name, Op: op, Message: "request to " + shownURL(target) + " failed", Retryable: true}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil && len(bytes.TrimSpace(raw)) > 0 {
			_ = json.Unmarshal(raw, out) // an answer that names no incident is fine
		}
		return nil
	}
	e := &Error{Provider: name, Op: op, Status: resp.StatusCode, Message: scrub(truncate(strings.TrimSpace(string(raw)), 200), sensitive)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout {
		e.Retryable = true
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

// urlParts are the parts of a URL that may be credentials.
func urlParts(raw string) []string {
	out := []string{raw}
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			out = append(out, rest[j:])
			for _, seg := range strings.FieldsFunc(rest[j:], func(r rune) bool { return r == '/' || r == '?' || r == '&' || r == '=' }) {
				if len(seg) >= 8 {
					out = append(out, seg)
				}
			}
		}
	}
	return out
}
