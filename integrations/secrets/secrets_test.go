package secrets

import (
	"context"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// canary is a secret value no error may ever contain.
const canary = "CANARY-s3cr3t-v4lue-7c1d"

var t0 = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

// assertNoLeak fails the test if any of texts contains canary.
func assertNoLeak(t *testing.T, canary string, texts ...string) {
	t.Helper()
	if canary == "" {
		t.Fatal("assertNoLeak needs a canary")
	}
	for _, s := range texts {
		if strings.Contains(s, canary) {
			t.Errorf("secret value leaked into %q", s)
		}
	}
}

// errText is err's text, failing the test when err is nil.
func errText(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	return err.Error()
}

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func config(provider string, mappings ...engine.SecretMapping) *engine.SecretsConfig {
	return &engine.SecretsConfig{Secrets: engine.SecretsSection{Provider: provider, Mappings: mappings}}
}

func mustNew(t *testing.T, cfg *engine.SecretsConfig, deps Deps) *Source {
	t.Helper()
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, s *Source, name string) any {
	t.Helper()
	v, err := s.Secret(context.Background(), name)
	if err != nil {
		t.Fatalf("secret %s: %v", name, err)
	}
	return v
}

func TestEnvProvider(t *testing.T) {
	s := mustNew(t, config("env",
		engine.SecretMapping{Name: "adminToken"},
		engine.SecretMapping{Name: "slack-webhook", Env: "SLACK_HOOK"},
		engine.SecretMapping{Name: "db", Fields: []string{"username", "password"}},
		engine.SecretMapping{Name: "dbJSON", Env: "DB_JSON", Fields: []string{"username", "password"}},
	), Deps{LookupEnv: envOf(map[string]string{
		"RUNBOOKBOT_SECRET_ADMINTOKEN":  canary,
		"SLACK_HOOK":                    "https://hooks.slack.com/x",
		"RUNBOOKBOT_SECRET_DB_USERNAME": "app",
		"RUNBOOKBOT_SECRET_DB_PASSWORD": canary,
		"DB_JSON":                       `{"username": "app", "password": "` + canary + `", "port": 5432}`,
	})})
	if got := get(t, s, "adminToken"); got != canary {
		t.Errorf("adminToken = %v", got)
	}
	if got := get(t, s, "slack-webhook"); got != "https://hooks.slack.com/x" {
		t.Errorf("slack-webhook = %v", got)
	}
	want := map[string]string{"username": "app", "password": canary}
	for _, name := range []string{"db", "dbJSON"} {
		if got := get(t, s, name); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v", name, got)
		}
	}
}

func TestEnvProviderErrors(t *testing.T) {
	s := mustNew(t, config("env",
		engine.SecretMapping{Name: "adminToken"},
		engine.SecretMapping{Name: "empty", Env: "EMPTY"},
		engine.SecretMapping{Name: "db", Fields: []string{"username", "password"}},
		engine.SecretMapping{Name: "dbJSON", Env: "DB_JSON", Fields: []string{"username", "password"}},
		engine.SecretMapping{Name: "notJSON", Env: "NOT_JSON", Fields: []string{"username"}},
	), Deps{LookupEnv: envOf(map[string]string{
		"EMPTY":                         "",
		"RUNBOOKBOT_SECRET_DB_USERNAME": canary,
		"DB_JSON":                       `{"username": "` + canary + `"}`,
		"NOT_JSON":                      canary,
	})})
	for name, want := range map[string]string{
		"adminToken": "env: environment variable RUNBOOKBOT_SECRET_ADMINTOKEN is not set",
		"empty":      "environment variable EMPTY is empty",
		"db":         "RUNBOOKBOT_SECRET_DB_PASSWORD is not set",
		"dbJSON":     `environment variable DB_JSON has no key "password" (it has keys username)`,
		"notJSON":    "NOT_JSON is not a JSON object",
	} {
		_, err := s.Secret(context.Background(), name)
		msg := errText(t, err)
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error %q, want %q", name, msg, want)
		}
		assertNoLeak(t, canary, msg)
	}
}

func TestUnknownSecretListsKnownNames(t *testing.T) {
	s := mustNew(t, config("env", engine.SecretMapping{Name: "b"}, engine.SecretMapping{Name: "a"}), Deps{})
	msg := errText(t, func() error { _, err := s.Secret(context.Background(), "c"); return err }())
	if msg != `unknown secret "c" (known: a, b)` {
		t.Errorf("error = %q", msg)
	}
	if got := s.Names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Names() = %v", got)
	}
	empty := mustNew(t, config("env"), Deps{})
	_, err := empty.Secret(context.Background(), "x")
	if !strings.Contains(errText(t, err), "none are configured") {
		t.Errorf("error = %v", err)
	}
}

// countingEnv counts lookups of the variables it serves.
type countingEnv struct {
	n    atomic.Int32
	vars map[string]string
}

func (c *countingEnv) lookup(k string) (string, bool) {
	c.n.Add(1)
	v, ok := c.vars[k]
	return v, ok
}

func TestValuesAreCachedForTheTTL(t *testing.T) {
	clock := enginetest.NewFakeClock(t0)
	env := &countingEnv{vars: map[string]string{"RUNBOOKBOT_SECRET_TOKEN": "one", "RUNBOOKBOT_SECRET_DB_USER": "u"}}
	s := mustNew(t, config("env", engine.SecretMapping{Name: "token"}, engine.SecretMapping{Name: "db", Fields: []string{"user"}}),
		Deps{LookupEnv: env.lookup, Clock: clock, CacheTTL: 30 * time.Second})
	get(t, s, "token")
	env.vars["RUNBOOKBOT_SECRET_TOKEN"] = "two"
	clock.Advance(29 * time.Second)
	if got := get(t, s, "token"); got != "one" || env.n.Load() != 1 {
		t.Errorf("within the TTL: %v after %d lookups", got, env.n.Load())
	}
	clock.Advance(time.Second)
	if got := get(t, s, "token"); got != "two" || env.n.Load() != 2 {
		t.Errorf("after the TTL: %v after %d lookups", got, env.n.Load())
	}
	// Cached maps are copies: changing one does not change the cache.
	m := get(t, s, "db").(map[string]string)
	m["user"] = "changed"
	if got := get(t, s, "db").(map[string]string)["user"]; got != "u" {
		t.Errorf("cache was changed through a returned map: %q", got)
	}
	s.Forget("token")
	env.vars["RUNBOOKBOT_SECRET_TOKEN"] = "three"
	if got := get(t, s, "token"); got != "three" {
		t.Errorf("after Forget: %v", got)
	}
}

func TestErrorsAreNotCachedAndCachingCanBeOff(t *testing.T) {
	clock := enginetest.NewFakeClock(t0)
	env := &countingEnv{vars: map[string]string{}}
	s := mustNew(t, config("env", engine.SecretMapping{Name: "token"}), Deps{LookupEnv: env.lookup, Clock: clock})
	if _, err := s.Secret(context.Background(), "token"); err == nil {
		t.Fatal("want an error")
	}
	env.vars["RUNBOOKBOT_SECRET_TOKEN"] = "now-set"
	if got := get(t, s, "token"); got != "now-set" {
		t.Errorf("got %v", got)
	}
	off := mustNew(t, config("env", engine.SecretMapping{Name: "token"}), Deps{LookupEnv: env.lookup, Clock: clock, CacheTTL: -1})
	before := env.n.Load()
	get(t, off, "token")
	get(t, off, "token")
	if n := env.n.Load() - before; n != 2 {
		t.Errorf("%d lookups with caching off, want 2", n)
	}
}

func TestProviderChoice(t *testing.T) {
	cfg := config("vault",
		engine.SecretMapping{Name: "fromVault", Path: "secret/data/x", Field: "token"},
		engine.SecretMapping{Name: "fromEnv", Env: "X"},
		engine.SecretMapping{Name: "fromFile", File: "/run/secrets/x"},
		engine.SecretMapping{Name: "explicit", Provider: "kubernetes-secrets", Path: "ops/x"},
	)
	cfg.Secrets.Vault = &engine.VaultConfig{Address: "https://vault.internal:8200"}
	s := mustNew(t, cfg, Deps{Kube: fake.NewClientset()})
	for name, want := range map[string]string{"fromVault": ProviderVault, "fromEnv": ProviderEnv, "fromFile": ProviderFile, "explicit": ProviderKubernetes, "nope": ""} {
		if got := s.Provider(name); got != want {
			t.Errorf("Provider(%s) = %q, want %q", name, got, want)
		}
	}
}

func TestNewRejectsWhatCannotWork(t *testing.T) {
	vault := func(c *engine.VaultConfig, m ...engine.SecretMapping) *engine.SecretsConfig {
		cfg := config("vault", m...)
		cfg.Secrets.Vault = c
		return cfg
	}
	tok := engine.SecretMapping{Name: "t", Path: "secret/data/t"}
	for name, tc := range map[string]struct {
		cfg  *engine.SecretsConfig
		deps Deps
		want string
	}{
		"nil config":       {nil, Deps{}, "no configuration"},
		"aws":              {config("vault", engine.SecretMapping{Name: "k", Provider: "aws-secrets-manager", Path: "p"}), Deps{}, "k: provider aws-secrets-manager is not supported in this build"},
		"unknown provider": {config("keepass", engine.SecretMapping{Name: "k", Path: "p"}), Deps{}, `unknown provider "keepass"`},
		"no provider":      {config("", engine.SecretMapping{Name: "k", Path: "p"}), Deps{}, "no provider"},
		"no kube client":   {config("kubernetes-secrets", engine.SecretMapping{Name: "k", Path: "ns/s"}), Deps{}, "needs a Kubernetes client"},
		"kube no ns":       {config("kubernetes-secrets", engine.SecretMapping{Name: "k", Path: "s"}), Deps{Kube: fake.NewClientset()}, "has no namespace"},
		"kube bad name":    {config("kubernetes-secrets", engine.SecretMapping{Name: "k", Path: "ns/Bad_Name"}), Deps{Kube: fake.NewClientset()}, "is not valid"},
		"vault no address": {vault(nil, tok), Deps{}, "needs vault.address"},
		"vault bad addr":   {vault(&engine.VaultConfig{Address: "vault:8200"}, tok), Deps{}, "must be an http(s) URL"},
		"vault approle":    {vault(&engine.VaultConfig{Address: "https://v", AuthMethod: "approle"}, tok), Deps{}, `authMethod "approle" is not supported`},
		"vault no role":    {vault(&engine.VaultConfig{Address: "https://v", AuthMethod: "kubernetes"}, tok), Deps{}, "needs vault.role"},
		"vault no path":    {vault(&engine.VaultConfig{Address: "https://v"}, engine.SecretMapping{Name: "t", Provider: "vault", Env: "X"}), Deps{}, "set path"},
		"file no path":     {config("file", engine.SecretMapping{Name: "f"}), Deps{}, "set file"},
		"duplicate":        {config("env", engine.SecretMapping{Name: "a"}, engine.SecretMapping{Name: "a"}), Deps{}, `"a" is defined twice`},
		"field and fields": {config("env", engine.SecretMapping{Name: "a", Field: "x", Fields: []string{"y"}}), Deps{}, "exclusive"},
	} {
		_, err := New(tc.cfg, tc.deps)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
	// An unused aws-secrets-manager default is fine while no mapping uses it.
	if _, err := New(config("aws-secrets-manager", engine.SecretMapping{Name: "e", Env: "E"}), Deps{}); err != nil {
		t.Errorf("aws default, env mapping: %v", err)
	}
}
