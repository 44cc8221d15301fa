package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// Credentials no error may contain.
const (
	tokenCanary = "hvs.T0KEN-CANARY-0a9b"
	jwtCanary   = "eyJhbGciOiJSUzI1NiJ9.JWT-CANARY.sig"
)

// fakeVault serves KV reads and Kubernetes logins. Its error messages
// quote the credentials they got, so tests can check we never pass them on.
type fakeVault struct {
	*httptest.Server
	mu      sync.Mutex
	data    map[string]string // API path (under /v1/) → response body
	tokens  map[string]bool   // accepted tokens
	role    string
	lease   int // login lease, seconds
	logins  int
	reads   []string
	headers http.Header // of the last read
	issued  int
}

func newFakeVault(t *testing.T) *fakeVault {
	v := &fakeVault{data: map[string]string{}, tokens: map[string]bool{tokenCanary: true}, role: "runbook-automation", lease: 3600}
	v.Server = httptest.NewServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.Close)
	return v
}

func (v *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
	}
	if r.Method == http.MethodPost && r.URL.Path == "/v1/auth/kubernetes/login" {
		var in struct{ Role, JWT string }
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &in)
		if in.Role != v.role || in.JWT != jwtCanary {
			fail(http.StatusBadRequest, fmt.Sprintf("invalid role name %q or jwt %s", in.Role, in.JWT))
			return
		}
		v.logins++
		v.issued++
		tok := fmt.Sprintf("hvs.login-%d-CANARY", v.issued)
		v.tokens[tok] = true
		json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": v.lease, "renewable": true}})
		return
	}
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/") {
		fail(http.StatusMethodNotAllowed, "unsupported")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	v.reads = append(v.reads, path)
	v.headers = r.Header.Clone()
	if tok := r.Header.Get("X-Vault-Token"); !v.tokens[tok] {
		fail(http.StatusForbidden, "permission denied: token "+tok+" is not valid")
		return
	}
	body, ok := v.data[path]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[]}`)
		return
	}
	io.WriteString(w, body)
}

// put stores a KV v2 secret.
func (v *fakeVault) put(path string, data map[string]any) {
	b, _ := json.Marshal(map[string]any{"data": map[string]any{"data": data, "metadata": map[string]any{"version": 3}}, "lease_duration": 0})
	v.mu.Lock()
	v.data[path] = string(b)
	v.mu.Unlock()
}

func (v *fakeVault) stats() (logins int, reads []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.logins, append([]string(nil), v.reads...)
}

// seedMappings are the mappings of the seed's secrets-config.yaml.
var seedMappings = []engine.SecretMapping{
	{Name: "adminToken", Path: "secret/data/runbooks/admin-token", Field: "token"},
	{Name: "slackWebhook", Path: "secret/data/runbooks/notifications", Field: "slack_webhook"},
	{Name: "databaseCredentials", Path: "secret/data/runbooks/database", Fields: []string{"username", "password"}},
}

func vaultConfig(v *fakeVault, vc engine.VaultConfig, mappings ...engine.SecretMapping) *engine.SecretsConfig {
	cfg := config("vault", mappings...)
	vc.Address = v.URL
	cfg.Secrets.Vault = &vc
	return cfg
}

func seedVault(t *testing.T) *fakeVault {
	v := newFakeVault(t)
	v.put("secret/data/runbooks/admin-token", map[string]any{"token": canary})
	v.put("secret/data/runbooks/notifications", map[string]any{"slack_webhook": "https://hooks.slack.com/services/T/B/x"})
	v.put("secret/data/runbooks/database", map[string]any{"username": "app", "password": canary, "port": 5432})
	return v
}

func TestVaultTokenAuth(t *testing.T) {
	v := seedVault(t)
	s := mustNew(t, vaultConfig(v, engine.VaultConfig{Namespace: "team-a"}, seedMappings...), Deps{VaultToken: tokenCanary})
	if got := get(t, s, "adminToken"); got != canary {
		t.Errorf("adminToken = %v", got)
	}
	if got := get(t, s, "databaseCredentials"); !reflect.DeepEqual(got, map[string]string{"username": "app", "password": canary}) {
		t.Errorf("databaseCredentials = %v", got)
	}
	_, reads := v.stats()
	if !reflect.DeepEqual(reads, []string{"secret/data/runbooks/admin-token", "secret/data/runbooks/database"}) {
		t.Errorf("reads = %v", reads)
	}
	if h := v.headers; h.Get("X-Vault-Token") != tokenCanary || h.Get("X-Vault-Namespace") != "team-a" {
		t.Errorf("headers = %v", h)
	}
}

func TestVaultTokenFromEnvironment(t *testing.T) {
	v := seedVault(t)
	s := mustNew(t, vaultConfig(v, engine.VaultConfig{AuthMethod: "token"}, seedMappings...),
		Deps{LookupEnv: envOf(map[string]string{"VAULT_TOKEN": tokenCanary + "\n"})})
	if got := get(t, s, "slackWebhook"); got != "https://hooks.slack.com/services/T/B/x" {
		t.Errorf("slackWebhook = %v", got)
	}
	if v.headers.Get("X-Vault-Namespace") != "" {
		t.Error("no namespace is configured, so none is sent")
	}
	none := mustNew(t, vaultConfig(v, engine.VaultConfig{}, seedMappings...), Deps{LookupEnv: envOf(nil)})
	_, err := none.Secret(context.Background(), "adminToken")
	if !strings.Contains(errText(t, err), "no Vault token: set VAULT_TOKEN") {
		t.Errorf("error = %v", err)
	}
}

func TestVaultErrorsNeverLeak(t *testing.T) {
	v := seedVault(t)
	cfg := vaultConfig(v, engine.VaultConfig{}, append(seedMappings,
		engine.SecretMapping{Name: "absent", Path: "secret/data/runbooks/absent"},
		engine.SecretMapping{Name: "wrongField", Path: "secret/data/runbooks/admin-token", Field: "password"},
		engine.SecretMapping{Name: "ambiguous", Path: "secret/data/runbooks/database"},
	)...)
	wrongToken := "hvs.WRONG-" + tokenCanary
	bad := mustNew(t, cfg, Deps{VaultToken: wrongToken})
	_, err := bad.Secret(context.Background(), "adminToken")
	msg := errText(t, err)
	if !strings.Contains(msg, "vault: permission denied reading secret/data/runbooks/admin-token (403): permission denied: token "+engine.Mask) {
		t.Errorf("error = %q", msg)
	}
	assertNoLeak(t, tokenCanary, msg)

	s := mustNew(t, cfg, Deps{VaultToken: tokenCanary})
	for name, want := range map[string]string{
		"absent":     "nothing at secret/data/runbooks/absent (404)",
		"wrongField": `secret/data/runbooks/admin-token has no key "password" (it has keys token)`,
		"ambiguous":  "has keys password, port, username: set field or fields",
	} {
		_, err := s.Secret(context.Background(), name)
		msg := errText(t, err)
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error %q, want %q", name, msg, want)
		}
		assertNoLeak(t, canary, msg)
		assertNoLeak(t, tokenCanary, msg)
	}

	v.Close() // Vault goes away
	down := mustNew(t, cfg, Deps{VaultToken: tokenCanary})
	_, err = down.Secret(context.Background(), "adminToken")
	msg = errText(t, err)
	if !strings.Contains(msg, "cannot reach Vault at "+v.URL) {
		t.Errorf("error = %q", msg)
	}
	assertNoLeak(t, tokenCanary, msg)
}

func TestVaultKVPaths(t *testing.T) {
	v := newFakeVault(t)
	v.put("secret/data/runbooks/x", map[string]any{"token": "x-value"})
	v.mu.Lock()
	v.data["kv1/runbooks/y"] = `{"data": {"token": "y-value"}, "lease_duration": 2764800}`
	v.data["secret/data/runbooks/deleted"] = `{"data": {"data": null, "metadata": {"deletion_time": "2026-01-01T00:00:00Z"}}}`
	v.mu.Unlock()
	mounted := mustNew(t, vaultConfig(v, engine.VaultConfig{Mount: "secret"},
		engine.SecretMapping{Name: "relative", Path: "runbooks/x"},
		engine.SecretMapping{Name: "mounted", Path: "secret/runbooks/x"},
		engine.SecretMapping{Name: "full", Path: "/secret/data/runbooks/x"},
		engine.SecretMapping{Name: "deleted", Path: "runbooks/deleted"},
	), Deps{VaultToken: tokenCanary, CacheTTL: -1})
	for _, name := range []string{"relative", "mounted", "full"} {
		if got := get(t, mounted, name); got != "x-value" {
			t.Errorf("%s = %v", name, got)
		}
	}
	_, reads := v.stats()
	for _, r := range reads {
		if r != "secret/data/runbooks/x" {
			t.Errorf("read %s, want secret/data/runbooks/x", r)
		}
	}
	_, err := mounted.Secret(context.Background(), "deleted")
	if !strings.Contains(errText(t, err), "has no current version") {
		t.Errorf("deleted: %v", err)
	}
	plain := mustNew(t, vaultConfig(v, engine.VaultConfig{}, engine.SecretMapping{Name: "v1", Path: "kv1/runbooks/y", Field: "token"}), Deps{VaultToken: tokenCanary})
	if got := get(t, plain, "v1"); got != "y-value" {
		t.Errorf("KV v1 = %v", got)
	}
}

// kubeAuth is a Source logging in to v with the Kubernetes method.
func kubeAuth(t *testing.T, v *fakeVault, clock *enginetest.FakeClock, role string) *Source {
	sa := write(t, t.TempDir(), "token", jwtCanary+"\n")
	return mustNew(t, vaultConfig(v, engine.VaultConfig{AuthMethod: "kubernetes", Role: role}, seedMappings...),
		Deps{ServiceAccountTokenPath: sa, Clock: clock, CacheTTL: -1, VaultToken: "ignored-with-kubernetes-auth"})
}

func TestVaultKubernetesLoginIsCachedForTheLease(t *testing.T) {
	v := seedVault(t)
	clock := enginetest.NewFakeClock(t0)
	s := kubeAuth(t, v, clock, "runbook-automation")
	get(t, s, "adminToken")
	get(t, s, "databaseCredentials")
	if logins, reads := v.stats(); logins != 1 || len(reads) != 2 {
		t.Fatalf("%d logins, %d reads; want 1 and 2", logins, len(reads))
	}
	if tok := v.headers.Get("X-Vault-Token"); tok != "hvs.login-1-CANARY" {
		t.Errorf("read with token %q", tok)
	}
	clock.Advance(50 * time.Minute) // within the hour's lease
	get(t, s, "adminToken")
	if logins, _ := v.stats(); logins != 1 {
		t.Errorf("%d logins within the lease", logins)
	}
	clock.Advance(10 * time.Minute) // the lease has (nearly) ended
	get(t, s, "adminToken")
	if logins, _ := v.stats(); logins != 2 {
		t.Errorf("%d logins after the lease, want 2", logins)
	}
	if tok := v.headers.Get("X-Vault-Token"); tok != "hvs.login-2-CANARY" {
		t.Errorf("read with token %q after logging in again", tok)
	}
}

func TestVaultLogsInAgainWhenTheTokenIsRevoked(t *testing.T) {
	v := seedVault(t)
	s := kubeAuth(t, v, enginetest.NewFakeClock(t0), "runbook-automation")
	get(t, s, "adminToken")
	v.mu.Lock()
	delete(v.tokens, "hvs.login-1-CANARY")
	v.mu.Unlock()
	if got := get(t, s, "adminToken"); got != canary {
		t.Errorf("adminToken = %v", got)
	}
	if logins, _ := v.stats(); logins != 2 {
		t.Errorf("%d logins, want 2", logins)
	}
}

func TestVaultLoginFailuresNeverShowTheJWT(t *testing.T) {
	v := seedVault(t)
	s := kubeAuth(t, v, enginetest.NewFakeClock(t0), "wrong-role")
	_, err := s.Secret(context.Background(), "adminToken")
	msg := errText(t, err)
	if !strings.Contains(msg, `kubernetes login to Vault as role "wrong-role": status 400: invalid role name`) {
		t.Errorf("error = %q", msg)
	}
	assertNoLeak(t, jwtCanary, msg)

	missing := filepath.Join(t.TempDir(), "no-token")
	s = mustNew(t, vaultConfig(v, engine.VaultConfig{AuthMethod: "kubernetes", Role: "runbook-automation"}, seedMappings...),
		Deps{ServiceAccountTokenPath: missing})
	_, err = s.Secret(context.Background(), "adminToken")
	if !strings.Contains(errText(t, err), "service account token: file "+missing+" does not exist") {
		t.Errorf("error = %v", err)
	}
}

func TestVaultReadsAreCached(t *testing.T) {
	v := seedVault(t)
	clock := enginetest.NewFakeClock(t0)
	s := mustNew(t, vaultConfig(v, engine.VaultConfig{}, seedMappings...), Deps{VaultToken: tokenCanary, Clock: clock})
	for range 5 {
		get(t, s, "adminToken")
	}
	clock.Advance(DefaultCacheTTL)
	get(t, s, "adminToken")
	if _, reads := v.stats(); len(reads) != 2 {
		t.Errorf("%d reads for 6 uses over two TTLs, want 2", len(reads))
	}
}

func TestSeedSecretsConfig(t *testing.T) {
	// The seed's secrets-config.yaml as the engine loads it, pointed at the
	// fake Vault.
	cat, diags := engine.LoadPaths(engine.NewRegistry(), filepath.Join("..", "..", "runbooks", "secrets.yaml"))
	if len(diags) > 0 || cat.Secrets == nil {
		t.Fatalf("loading the seed: %v", diags)
	}
	v := seedVault(t)
	cfg := cat.Secrets
	cfg.Secrets.Vault.Address = v.URL
	sa := write(t, t.TempDir(), "token", jwtCanary)
	s := mustNew(t, cfg, Deps{ServiceAccountTokenPath: sa})
	if got := s.Names(); !reflect.DeepEqual(got, []string{"adminToken", "databaseCredentials", "slackWebhook"}) {
		t.Errorf("Names() = %v", got)
	}
	if got := get(t, s, "adminToken"); got != canary {
		t.Errorf("adminToken = %v", got)
	}
	if logins, _ := v.stats(); logins != 1 {
		t.Errorf("%d logins", logins)
	}
}
