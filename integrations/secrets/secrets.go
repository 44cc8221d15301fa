// Package secrets resolves the `secrets.NAME` references of runbooks
// through the providers named in the secrets configuration
// (engine.SecretsConfig, the seed's secrets-config.yaml). Source
// implements engine.SecretSource.
//
// Each mapping is read by its own provider, or else by the configured
// default; a mapping with no path but an env or file setting uses the env
// or file provider:
//
//	env                 the variable mapping.env, default
//	                    RUNBOOKBOT_SECRET_<NAME> (upper-cased); with fields,
//	                    one variable <VAR>_<FIELD> per field, or <VAR>
//	                    holding a JSON object
//	file                the file mapping.file (or path), one trailing
//	                    newline trimmed; with field or fields, a directory
//	                    of one file per key (a mounted Secret) or a JSON or
//	                    YAML file of keys
//	kubernetes-secrets  the Secret at path "namespace/name" (or "name" in
//	                    kubernetes.namespace); field and fields are data keys
//	vault               a KV v2 read of path (GET /v1/<path>); field and
//	                    fields are keys of .data.data
//	aws-secrets-manager not supported in this build: New fails if a
//	                    mapping uses it
//
// A mapping with neither field nor fields reads a single value: a whole
// variable or file, or the only key of a Vault secret or Kubernetes
// Secret. (An env variable is always the whole value; field is for the
// other providers.) Values are strings, and must not be empty; mappings
// with fields give map[string]string.
//
// Values are cached for a short TTL (Deps.CacheTTL, default one minute) so
// the many steps of a runbook do not each reach Vault. Errors are never
// cached.
//
// Errors name the secret's variable, file, path, keys and provider, never
// a value; the same holds for the debug logs.
package secrets

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/runbookbot/runbookbot/engine"
)

// Provider names, as written in the secrets configuration.
const (
	ProviderEnv        = "env"
	ProviderFile       = "file"
	ProviderKubernetes = "kubernetes-secrets"
	ProviderVault      = "vault"
	ProviderAWS        = "aws-secrets-manager"
)

// DefaultCacheTTL is how long a value is reused when Deps.CacheTTL is 0.
const DefaultCacheTTL = time.Minute

// DefaultServiceAccountTokenPath is where a pod's service account token is
// mounted.
const DefaultServiceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Deps are the outside systems and knobs a Source uses. All are optional
// unless a mapping needs them.
type Deps struct {
	// Kube reads Secrets for the kubernetes-secrets provider.
	Kube kubernetes.Interface
	// HTTPClient talks to Vault (default: a client with a 30s timeout).
	HTTPClient *http.Client
	// VaultToken authenticates to Vault when authMethod is token (or
	// empty); if empty, the VAULT_TOKEN environment variable is used.
	VaultToken string
	// ServiceAccountTokenPath is the JWT sent to Vault's Kubernetes auth
	// (default DefaultServiceAccountTokenPath). It is read at each login.
	ServiceAccountTokenPath string
	// LookupEnv reads environment variables (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Clock times the cache and Vault token leases (default: wall clock).
	Clock engine.Clock
	// CacheTTL is how long values are reused: 0 means DefaultCacheTTL,
	// negative turns caching off.
	CacheTTL time.Duration
	// Logger receives debug logs (names and providers, never values).
	Logger *slog.Logger
}

// provider reads one mapping's value.
type provider interface {
	// fetch returns a string, or map[string]string for mappings with fields.
	fetch(ctx context.Context, m *engine.SecretMapping) (any, error)
}

// checker is a provider that can tell at New time that a mapping cannot
// work (no path, a malformed one).
type checker interface {
	check(m *engine.SecretMapping) error
}

// entry is one known secret.
type entry struct {
	m        engine.SecretMapping
	provider string
	p        provider
}

// cached is a value and when it stops being reused.
type cached struct {
	val     any
	expires time.Time
}

// Source resolves secrets through the configured providers. It is safe
// for concurrent use.
type Source struct {
	deps    Deps
	log     *slog.Logger
	entries map[string]*entry
	names   []string

	mu    sync.Mutex
	cache map[string]cached
}

var _ engine.SecretSource = (*Source)(nil)

// New checks cfg against what the mappings need (a Kubernetes client, a
// Vault address, a supported provider) and returns a Source. Nothing is
// read until a secret is asked for.
func New(cfg *engine.SecretsConfig, deps Deps) (*Source, error) {
	if cfg == nil {
		return nil, fmt.Errorf("secrets: no configuration")
	}
	if deps.LookupEnv == nil {
		deps.LookupEnv = os.LookupEnv
	}
	if deps.Clock == nil {
		deps.Clock = engine.SystemClock{}
	}
	if deps.CacheTTL == 0 {
		deps.CacheTTL = DefaultCacheTTL
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if deps.ServiceAccountTokenPath == "" {
		deps.ServiceAccountTokenPath = DefaultServiceAccountTokenPath
	}
	s := &Source{deps: deps, log: deps.Logger, entries: map[string]*entry{}, cache: map[string]cached{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	sec := cfg.Secrets
	providers := map[string]provider{}
	get := func(name string) (provider, error) {
		if p, ok := providers[name]; ok {
			return p, nil
		}
		var p provider
		switch name {
		case ProviderEnv:
			p = &envProvider{lookup: deps.LookupEnv}
		case ProviderFile:
			p = fileProvider{}
		case ProviderKubernetes:
			if deps.Kube == nil {
				return nil, fmt.Errorf("provider %s needs a Kubernetes client", name)
			}
			ns := ""
			if sec.Kubernetes != nil {
				ns = sec.Kubernetes.Namespace
			}
			p = &kubeProvider{client: deps.Kube, namespace: ns}
		case ProviderVault:
			v, err := newVault(sec.Vault, deps)
			if err != nil {
				return nil, err
			}
			p = v
		case ProviderAWS:
			return nil, fmt.Errorf("provider %s is not supported in this build", name)
		case "":
			return nil, fmt.Errorf("no provider: set secrets.provider or the mapping's provider")
		default:
			return nil, fmt.Errorf("unknown provider %q (providers: %s)", name, strings.Join([]string{ProviderVault, ProviderKubernetes, ProviderEnv, ProviderFile}, ", "))
		}
		providers[name] = p
		return p, nil
	}
	for i, m := range sec.Mappings {
		if strings.TrimSpace(m.Name) == "" {
			return nil, fmt.Errorf("secrets: mappings[%d]: name is required", i)
		}
		if _, dup := s.entries[m.Name]; dup {
			return nil, fmt.Errorf("secrets: mappings[%d]: %q is defined twice", i, m.Name)
		}
		if m.Field != "" && len(m.Fields) > 0 {
			return nil, fmt.Errorf("secrets: %s: field and fields are exclusive", m.Name)
		}
		name := providerFor(sec.Provider, m)
		p, err := get(name)
		if err != nil {
			return nil, fmt.Errorf("secrets: %s: %w", m.Name, err)
		}
		if c, ok := p.(checker); ok {
			if err := c.check(&m); err != nil {
				return nil, fmt.Errorf("secrets: %s (%s): %w", m.Name, name, err)
			}
		}
		s.entries[m.Name] = &entry{m: m, provider: name, p: p}
		s.names = append(s.names, m.Name)
	}
	sort.Strings(s.names)
	return s, nil
}

// providerFor picks a mapping's provider: its own, else env or file when
// it names only those, else the configured default.
func providerFor(def string, m engine.SecretMapping) string {
	switch {
	case m.Provider != "":
		return m.Provider
	case m.Path == "" && m.Env != "":
		return ProviderEnv
	case m.Path == "" && m.File != "":
		return ProviderFile
	}
	return def
}

// Names returns the names of the known secrets, sorted.
func (s *Source) Names() []string { return append([]string(nil), s.names...) }

// Provider returns the provider that reads name, or "" if name is unknown.
func (s *Source) Provider(name string) string {
	if e := s.entries[name]; e != nil {
		return e.provider
	}
	return ""
}

// Secret returns the value of the secret name: a string, or a
// map[string]string for a mapping with fields. A value read less than the
// cache TTL ago is reused.
func (s *Source) Secret(ctx context.Context, name string) (any, error) {
	e := s.entries[name]
	if e == nil {
		known := "none are configured"
		if len(s.names) > 0 {
			known = "known: " + strings.Join(s.names, ", ")
		}
		return nil, fmt.Errorf("unknown secret %q (%s)", name, known)
	}
	now := s.deps.Clock.Now()
	if s.deps.CacheTTL > 0 {
		s.mu.Lock()
		c, ok := s.cache[name]
		s.mu.Unlock()
		if ok && now.Before(c.expires) {
			s.log.Debug("secret from cache", "secret", name)
			return copyValue(c.val), nil
		}
	}
	v, err := e.p.fetch(ctx, &e.m)
	if err != nil {
		s.log.Debug("secret not read", "secret", name, "provider", e.provider, "err", err)
		return nil, fmt.Errorf("%s: %w", e.provider, err)
	}
	if str, ok := v.(string); ok && str == "" {
		return nil, fmt.Errorf("%s: %s is empty", e.provider, describe(&e.m, e.provider))
	}
	s.log.Debug("secret read", "secret", name, "provider", e.provider)
	if s.deps.CacheTTL > 0 {
		s.mu.Lock()
		s.cache[name] = cached{val: v, expires: s.deps.Clock.Now().Add(s.deps.CacheTTL)}
		s.mu.Unlock()
	}
	return copyValue(v), nil
}

// Forget drops cached values (all of them when no names are given), so the
// next read reaches the provider: after a rotation, say.
func (s *Source) Forget(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(names) == 0 {
		s.cache = map[string]cached{}
		return
	}
	for _, n := range names {
		delete(s.cache, n)
	}
}

// copyValue copies maps so callers cannot change the cache.
func copyValue(v any) any {
	m, ok := v.(map[string]string)
	if !ok {
		return v
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = x
	}
	return out
}

// describe says where a mapping's value lives, for messages.
func describe(m *engine.SecretMapping, provider string) string {
	switch provider {
	case ProviderEnv:
		return "environment variable " + envVar(m)
	case ProviderFile:
		return "file " + filePath(m)
	}
	return m.Path
}
