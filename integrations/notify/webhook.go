package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/runbookbot/runbookbot/integrations/secrets"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// TemplateVars are the names a webhook body template can use.
var TemplateVars = []string{"message", "severity", "runbook", "executionId", "channels"}

// webhook is one configured webhook with its body template compiled.
type webhook struct {
	cfg    WebhookConfig
	method string
	body   *engine.Template
	err    error // a configuration problem, reported on delivery
}

func newWebhook(c WebhookConfig) *webhook {
	w := &webhook{cfg: c, method: strings.ToUpper(strings.TrimSpace(c.Method))}
	if w.method == "" {
		w.method = http.MethodPost
	}
	w.err = c.validate()
	if w.err == nil && c.Body != "" {
		w.body, w.err = parseBody(c.Body)
	}
	return w
}

// parseBody compiles a body template and checks it only uses TemplateVars.
func parseBody(src string) (*engine.Template, error) {
	t, err := engine.ParseTemplate(src, engine.BuiltinFilters())
	if err != nil {
		return nil, fmt.Errorf("body: %v", err)
	}
	known := map[string]bool{}
	for _, v := range TemplateVars {
		known[v] = true
	}
	for _, r := range t.Refs() {
		if !known[r.Root] {
			return nil, fmt.Errorf("body: unknown name %q (templates can use %s)", r.Root, strings.Join(TemplateVars, ", "))
		}
	}
	return t, nil
}

// validate checks a webhook's static configuration. Messages never quote
// header values or URLs, which may be credentials.
func (c WebhookConfig) validate() error {
	if strings.TrimSpace(c.Name) == "" {
		return fmt.Errorf("name is required")
	}
	if strings.ContainsAny(c.Name, " \t\n,") {
		return fmt.Errorf("name %q: use letters, digits, - and _", c.Name)
	}
	switch m := strings.ToUpper(strings.TrimSpace(c.Method)); m {
	case "", http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return fmt.Errorf("method %q: use POST, PUT or PATCH", c.Method)
	}
	if strings.TrimSpace(c.URL) == "" {
		return fmt.Errorf("url is required")
	}
	if !secrets.HasRefs(c.URL) {
		if err := checkURL(c.URL); err != nil {
			return err
		}
	}
	for k := range c.Headers {
		if !validHeaderName(k) {
			return fmt.Errorf("headers: %q is not a valid header name", k)
		}
	}
	return nil
}

// checkURL accepts absolute http(s) URLs. The error does not quote the URL.
func checkURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url must be an absolute http(s) URL")
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

// templateEnv is what body templates see.
func templateEnv(msg engine.Notification, channels []string) map[string]any {
	chs := make([]any, len(channels))
	for i, c := range channels {
		chs[i] = c
	}
	return map[string]any{
		"message": msg.Message, "severity": msg.Severity, "runbook": msg.Runbook,
		"executionId": msg.ExecutionID, "channels": chs,
	}
}

// renderBody renders the body, or the default JSON document.
func (w *webhook) renderBody(ctx context.Context, env map[string]any) ([]byte, error) {
	if w.body == nil {
		return json.Marshal(env)
	}
	v, err := w.body.Render(ctx, env, engine.BuiltinFilters())
	if err != nil {
		return nil, fmt.Errorf("rendering the body: %v", err)
	}
	return []byte(engine.Stringify(v)), nil
}

// sendWebhook delivers msg to w. channels are the notification's channels
// as the template sees them.
func (n *Notifier) sendWebhook(ctx context.Context, w *webhook, msg engine.Notification, channels []string) error {
	name := "webhook " + w.cfg.Name
	if w.err != nil {
		return fmt.Errorf("%s: misconfigured: %w", name, w.err)
	}
	r := &resolver{n: n}
	target, err := r.expand(ctx, strings.TrimSpace(w.cfg.URL))
	if err != nil {
		return fmt.Errorf("%s: url: %w", name, err)
	}
	r.sensitive = append(r.sensitive, urlSecrets(target)...)
	if err := checkURL(target); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	header := http.Header{}
	keys := make([]string, 0, len(w.cfg.Headers))
	for k := range w.cfg.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := w.cfg.Headers[k]
		v, err := r.expand(ctx, raw)
		if err != nil {
			return fmt.Errorf("%s: header %s: %w", name, k, err)
		}
		r.sensitive = append(r.sensitive, raw, v)
		header.Set(k, v)
	}
	body, err := w.renderBody(ctx, templateEnv(msg, channels))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if header.Get("Content-Type") == "" {
		if json.Valid(body) {
			header.Set("Content-Type", "application/json")
		} else {
			header.Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	_, err = n.deliver(ctx, &request{
		channel: name, method: w.method, url: target, shown: shownURL(target),
		header: header, body: body, sensitive: r.sensitive,
	})
	if err != nil {
		return err
	}
	n.log.Debug("webhook notification sent", "webhook", w.cfg.Name, "url", shownURL(target), "execution", msg.ExecutionID)
	return nil
}
