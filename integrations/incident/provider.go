package incident

import (
	"context"
	"errors"
	"fmt"
	"github.com/runbookbot/runbookbot/integrations/secrets"
	"net/url"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Provider is an incident system the timeline writes to.
type Provider interface {
	// Attach returns the incident an execution belongs to: the one a.ID
	// names, else an open one whose key is a.Key, else (when a.Create) a
	// new one keyed a.Key. Attaching twice with the same Attachment gives
	// the same incident.
	Attach(ctx context.Context, a Attachment) (Incident, error)
	// Note adds one entry to the incident's timeline.
	Note(ctx context.Context, inc Incident, e Entry) error
	// Noted reports whether an entry with this marker is in the timeline
	// already (ok false: the provider cannot tell).
	Noted(ctx context.Context, inc Incident, marker string) (found, ok bool, err error)
	// Resolve resolves the incident; resolving a resolved one succeeds.
	Resolve(ctx context.Context, inc Incident, e Entry) error
	// Escalate hands the incident on to the next people.
	Escalate(ctx context.Context, inc Incident, e Entry) error
}

// Attachment says which incident an execution belongs to.
type Attachment struct {
	// ID is the provider's incident id, when the trigger named one.
	ID string
	// Key is the dedup key to look an open incident up by, and to create
	// one with.
	Key string
	// Create allows creating an incident when none is found.
	Create bool
	// Title and Details describe an incident to create.
	Title   string
	Details string
	// ExecutionID and Runbook are the execution's.
	ExecutionID string
	Runbook     string
}

// Incident is an incident an execution is attached to.
type Incident struct {
	ID      string `json:"id"`
	Key     string `json:"key,omitempty"`
	URL     string `json:"url,omitempty"`
	Created bool   `json:"created,omitempty"`
}

// Entry kinds: the seed's entry_type values.
const (
	KindStart             = "automation"
	KindStep              = "automation_step"
	KindApprovalRequested = "approval_requested"
	KindApprovalResponse  = "approval_response"
	KindRollback          = "automation_rollback"
	KindComplete          = "automation_complete"
	KindEscalation        = "escalation"
	KindResolution        = "resolution"
)

// Entry is one timeline entry.
type Entry struct {
	// Marker identifies the entry across retries and restarts.
	Marker      string         `json:"marker"`
	Kind        string         `json:"entry_type"`
	Time        time.Time      `json:"timestamp"`
	Title       string         `json:"title"`
	Status      string         `json:"status,omitempty"`
	Details     map[string]any `json:"details,omitempty"`
	ExecutionID string         `json:"execution_id"`
	Runbook     string         `json:"runbook"`
}

// Text renders the entry as a note: the title, the details one per line,
// and the marker.
func (e Entry) Text() string {
	var b strings.Builder
	b.WriteString(e.Title)
	if e.Status != "" {
		b.WriteString(" — " + e.Status)
	}
	for _, k := range sortedKeys(e.Details) {
		v := e.Details[k]
		if v == nil || v == "" {
			continue
		}
		fmt.Fprintf(&b, "\n%s: %s", k, detailString(v))
	}
	b.WriteString("\n" + markerText(e.Marker))
	return b.String()
}

func markerText(m string) string { return "[runbookbot " + m + "]" }

func detailString(v any) string {
	switch x := v.(type) {
	case map[string]any:
		parts := make([]string, 0, len(x))
		for _, k := range sortedKeys(x) {
			parts = append(parts, k+"="+engine.Stringify(x[k]))
		}
		return strings.Join(parts, ", ")
	case []string:
		return strings.Join(x, ", ")
	}
	return engine.Stringify(v)
}

// Error is a provider's failure. Retryable failures are retried with
// backoff and hold the cursor; others drop the operation.
type Error struct {
	Provider  string
	Op        string
	Status    int
	Code      int
	Message   string
	Retryable bool
	// RetryAfter is how long the provider asked to wait (429).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := e.Provider + ": " + e.Op
	if e.Status != 0 {
		s += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Code != 0 {
		s += fmt.Sprintf(" (code %d)", e.Code)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// retryable reports whether err may succeed later, and how long to wait.
func retryable(err error) (bool, time.Duration) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Retryable, pe.RetryAfter
	}
	return true, 0 // transport and unknown failures
}

// Secrets resolves ${secret:NAME} references.
type Secrets interface {
	Secret(ctx context.Context, name string) (any, error)
}

// refs expands ${env:} and ${secret:} references and remembers what it
// resolved, so errors can be scrubbed of it.
type refs struct {
	secrets   Secrets
	lookupEnv func(string) (string, bool)
}

func (r refs) expand(ctx context.Context, s string, sensitive *[]string) (string, error) {
	var src engine.SecretSource
	if r.secrets != nil {
		src = r.secrets
	}
	out, produced, err := secrets.ExpandRefs(ctx, s, src, r.lookupEnv)
	*sensitive = append(*sensitive, produced...)
	if err != nil {
		return "", err
	}
	if out != s {
		*sensitive = append(*sensitive, out)
	}
	return out, nil
}

// scrub replaces every sensitive value in s.
func scrub(s string, sensitive []string) string {
	for _, v := range sensitive {
		if len(v) >= 3 {
			s = strings.ReplaceAll(s, v, engine.Mask)
			if q := url.QueryEscape(v); q != v {
				s = strings.ReplaceAll(s, q, engine.Mask)
			}
		}
	}
	return s
}

// shownURL is how errors name a URL: scheme and host only.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
