package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Vault authentication methods.
const (
	VaultAuthToken      = "token"
	VaultAuthKubernetes = "kubernetes"
)

// maxVaultResponse bounds how much of a Vault response is read.
const maxVaultResponse = 1 << 20

// vaultProvider reads KV v2 secrets over Vault's HTTP API.
//
// Paths are API paths under /v1: the seed's secret/data/runbooks/x is
// already a KV v2 data path. With vault.mount set, a path is taken
// relative to that mount and data/ is added when missing, as the vault kv
// command does (mount secret: runbooks/x and secret/runbooks/x both read
// secret/data/runbooks/x).
type vaultProvider struct {
	base      *url.URL
	shown     string
	namespace string
	mount     string
	auth      string
	role      string
	client    *http.Client
	token     string // Deps.VaultToken
	lookup    func(string) (string, bool)
	saPath    string
	clock     engine.Clock
	log       *slog.Logger

	mu      sync.Mutex
	login   string    // client token from the Kubernetes login
	expires time.Time // when to log in again; zero: never
}

func newVault(c *engine.VaultConfig, deps Deps) (*vaultProvider, error) {
	if c == nil || strings.TrimSpace(c.Address) == "" {
		return nil, errors.New("provider vault needs vault.address")
	}
	u, err := url.Parse(strings.TrimSpace(c.Address))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("vault.address must be an http(s) URL such as https://vault.internal:8200")
	}
	v := &vaultProvider{
		base: u, shown: u.Scheme + "://" + u.Host, namespace: c.Namespace,
		mount: strings.Trim(c.Mount, "/"), auth: strings.ToLower(strings.TrimSpace(c.AuthMethod)), role: c.Role,
		client: deps.HTTPClient, token: deps.VaultToken, lookup: deps.LookupEnv, saPath: deps.ServiceAccountTokenPath,
		clock: deps.Clock, log: deps.Logger,
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	switch v.auth {
	case "", VaultAuthToken:
		v.auth = VaultAuthToken
	case VaultAuthKubernetes:
		if strings.TrimSpace(c.Role) == "" {
			return nil, errors.New("vault authMethod kubernetes needs vault.role")
		}
	default:
		return nil, fmt.Errorf("vault authMethod %q is not supported (use token or kubernetes)", c.AuthMethod)
	}
	return v, nil
}

func (v *vaultProvider) check(m *engine.SecretMapping) error {
	if strings.Trim(m.Path, "/ ") == "" {
		return errors.New("set path to the Vault secret, e.g. secret/data/runbooks/admin-token")
	}
	return nil
}

// apiPath is the path under /v1 that a mapping reads.
func (v *vaultProvider) apiPath(m *engine.SecretMapping) string {
	p := strings.Trim(strings.TrimSpace(m.Path), "/")
	if v.mount == "" {
		return p
	}
	p = strings.TrimPrefix(strings.TrimPrefix(p, v.mount), "/")
	if !strings.HasPrefix(p, "data/") {
		p = "data/" + p
	}
	return v.mount + "/" + p
}

func (v *vaultProvider) fetch(ctx context.Context, m *engine.SecretMapping) (any, error) {
	path := v.apiPath(m)
	for attempt := 1; ; attempt++ {
		tok, err := v.clientToken(ctx)
		if err != nil {
			return nil, err
		}
		status, body, err := v.do(ctx, http.MethodGet, path, tok, nil)
		if err != nil {
			return nil, err
		}
		switch {
		case status == http.StatusOK:
			return v.decodeRead(m, path, body)
		case status == http.StatusForbidden && v.auth == VaultAuthKubernetes && attempt == 1:
			// The login token may have been revoked: log in again once.
			v.forgetLogin(tok)
			continue
		case status == http.StatusNotFound:
			return nil, fmt.Errorf("nothing at %s (404)%s", path, v.detail(body, tok))
		case status == http.StatusForbidden:
			return nil, fmt.Errorf("permission denied reading %s (403)%s", path, v.detail(body, tok))
		}
		return nil, fmt.Errorf("reading %s: status %d%s", path, status, v.detail(body, tok))
	}
}

// decodeRead picks the mapping's keys out of a read response: .data.data
// for KV v2, else .data (KV v1).
func (v *vaultProvider) decodeRead(m *engine.SecretMapping, path string, body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var resp struct {
		Data map[string]any `json:"data"`
	}
	if err := dec.Decode(&resp); err != nil || resp.Data == nil {
		return nil, fmt.Errorf("reading %s: Vault's answer has no data", path)
	}
	obj := resp.Data
	if inner, ok := resp.Data["data"].(map[string]any); ok {
		obj = inner
	} else if _, v2 := resp.Data["metadata"]; v2 {
		return nil, fmt.Errorf("%s has no current version (deleted or destroyed)", path)
	}
	data, err := textValues(obj, path)
	if err != nil {
		return nil, err
	}
	return pick(m, data, path)
}

// clientToken is the token for the next request: the configured one, or
// the Kubernetes login's while its lease lasts.
func (v *vaultProvider) clientToken(ctx context.Context) (string, error) {
	if v.auth == VaultAuthToken {
		if v.token != "" {
			return v.token, nil
		}
		if t, ok := v.lookup("VAULT_TOKEN"); ok && strings.TrimSpace(t) != "" {
			return strings.TrimSpace(t), nil
		}
		return "", errors.New("no Vault token: set VAULT_TOKEN, or use authMethod kubernetes")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.clock.Now()
	if v.login != "" && (v.expires.IsZero() || now.Before(v.expires)) {
		return v.login, nil
	}
	tok, lease, err := v.kubernetesLogin(ctx)
	if err != nil {
		return "", err
	}
	v.login, v.expires = tok, time.Time{}
	if lease > 0 {
		// Log in again a little before the lease ends.
		v.expires = now.Add(lease - min(lease/10, time.Minute))
	}
	v.log.Debug("logged in to Vault", "role", v.role, "lease", lease)
	return tok, nil
}

// forgetLogin drops a login token Vault refused.
func (v *vaultProvider) forgetLogin(tok string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.login == tok {
		v.login, v.expires = "", time.Time{}
	}
}

// kubernetesLogin exchanges the service account token for a Vault token.
func (v *vaultProvider) kubernetesLogin(ctx context.Context) (string, time.Duration, error) {
	raw, err := os.ReadFile(v.saPath)
	if err != nil {
		return "", 0, fmt.Errorf("kubernetes login to Vault: service account token: %w", fileError(v.saPath, err))
	}
	jwt := strings.TrimSpace(string(raw))
	if jwt == "" {
		return "", 0, fmt.Errorf("kubernetes login to Vault: service account token %s is empty", v.saPath)
	}
	body, _ := json.Marshal(map[string]string{"role": v.role, "jwt": jwt})
	status, resp, err := v.do(ctx, http.MethodPost, "auth/kubernetes/login", "", body)
	if err != nil {
		return "", 0, fmt.Errorf("kubernetes login to Vault: %w", err)
	}
	if status != http.StatusOK {
		return "", 0, fmt.Errorf("kubernetes login to Vault as role %q: status %d%s", v.role, status, v.detail(resp, jwt))
	}
	var out struct {
		Auth *struct {
			ClientToken   string `json:"client_token"`
			LeaseDuration int64  `json:"lease_duration"`
		} `json:"auth"`
	}
	if json.Unmarshal(resp, &out) != nil || out.Auth == nil || out.Auth.ClientToken == "" {
		return "", 0, fmt.Errorf("kubernetes login to Vault as role %q: the answer has no client token", v.role)
	}
	return out.Auth.ClientToken, time.Duration(out.Auth.LeaseDuration) * time.Second, nil
}

// do sends one request to /v1/<apiPath>. Transport errors name Vault's
// scheme and host only.
func (v *vaultProvider) do(ctx context.Context, method, apiPath, token string, body []byte) (int, []byte, error) {
	u := v.base.JoinPath("v1", apiPath)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, fmt.Errorf("building the request for %s: invalid path", apiPath)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if v.namespace != "" {
		req.Header.Set("X-Vault-Namespace", v.namespace)
	}
	req.Header.Set("X-Vault-Request", "true")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("reaching Vault at %s: %w", v.shown, context.Cause(ctx))
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("cannot reach Vault at %s: %v", v.shown, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxVaultResponse))
	return resp.StatusCode, data, nil
}

// detail is Vault's error list from a response, scrubbed of the
// credentials that were sent, as ": a; b" (or "").
func (v *vaultProvider) detail(body []byte, sent ...string) string {
	var e struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	s := strings.Join(e.Errors, "; ")
	for _, x := range sent {
		if len(x) >= 4 {
			s = strings.ReplaceAll(s, x, engine.Mask)
		}
	}
	// Shorten after scrubbing, so no credential is cut in half and kept.
	if r := []rune(s); len(r) > 300 {
		s = string(r[:300]) + "…"
	}
	return ": " + s
}
