package engine

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Mask replaces secret values wherever they appear.
const Mask = "[REDACTED]"

// Redactor removes known secret values from text and structured values. An
// execution adds every secret it resolves; events, errors and outputs pass
// through it before they are persisted or shown.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
	// exact are secret-derived values too short to search for in text
	// (two characters of a secret): a value equal to one is masked whole.
	exact map[string]bool
}

// AddExact registers a secret-derived value that is masked where a value
// equals it (Value, Map, Event fields), not where text contains it.
func (r *Redactor) AddExact(s string) {
	if s == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exact == nil {
		r.exact = map[string]bool{}
	}
	r.exact[s] = true
}

func (r *Redactor) isExact(s string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.exact[s]
}

// Add registers secret values (strings, or maps and lists of them).
func (r *Redactor) Add(v any) {
	switch x := v.(type) {
	case string:
		if len(x) < 3 {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.secrets {
			if s == x {
				return
			}
		}
		// The value and the forms it takes when it is encoded on its way
		// out (URLs, JSON, Basic auth, case-folding filters).
		forms := []string{x, strings.ToUpper(x), strings.ToLower(x), url.QueryEscape(x), url.PathEscape(x),
			base64.StdEncoding.EncodeToString([]byte(x)), base64.RawStdEncoding.EncodeToString([]byte(x)),
			base64.URLEncoding.EncodeToString([]byte(x)), base64.RawURLEncoding.EncodeToString([]byte(x))}
		if q := strconv.Quote(x); len(q) > 2 {
			forms = append(forms, q[1:len(q)-1])
		}
		seen := make(map[string]bool, len(r.secrets)+len(forms))
		for _, s := range r.secrets {
			seen[s] = true
		}
		for _, f := range forms {
			if len(f) >= 3 && !seen[f] {
				seen[f] = true
				r.secrets = append(r.secrets, f)
			}
		}
		// Longest first so a secret containing another is masked whole.
		sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	case map[string]string:
		for _, s := range x {
			r.Add(s)
		}
	case map[string]any:
		for _, s := range x {
			r.Add(s)
		}
	case []any:
		for _, s := range x {
			r.Add(s)
		}
	}
}

// String masks secrets in s.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return s
}

// Value returns a copy of v with secrets masked in every string.
func (r *Redactor) Value(v any) any {
	switch x := v.(type) {
	case string:
		if r != nil && r.isExact(x) {
			return Mask
		}
		return r.String(x)
	case map[string]any:
		return r.Map(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.Value(e)
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = r.String(e)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.String(e)
		}
		return out
	}
	return v
}

// Map returns a copy of m with secrets masked.
func (r *Redactor) Map(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = r.Value(v)
	}
	return out
}

// Event masks secrets in every free-text and structured field of e.
func (r *Redactor) Event(e *Event) {
	e.Parameters = r.Map(e.Parameters)
	e.Context = r.Map(e.Context)
	e.Message = r.String(e.Message)
	if e.Step != nil {
		s := *e.Step
		s.Input, s.Output, s.State = r.Map(s.Input), r.Map(s.Output), r.Map(s.State)
		s.Error, s.Reason = r.String(s.Error), r.String(s.Reason)
		e.Step = &s
	}
	if e.Approval != nil {
		a := *e.Approval
		a.Comment, a.Reason = r.String(a.Comment), r.String(a.Reason)
		e.Approval = &a
	}
	if e.Rollback != nil {
		rb := *e.Rollback
		rb.Reason = r.String(rb.Reason)
		e.Rollback = &rb
	}
}
