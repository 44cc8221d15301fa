package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/runbookbot/runbookbot/engine"
)

// TokenEntry is one line of the tokens file. The token itself is never
// stored: SHA256 is the hex SHA-256 of it (`printf %s "$TOKEN" | sha256sum`).
type TokenEntry struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	// Subject is the RBAC user or group the token acts as: a user id as
	// rbac.yaml spells it, a group name of rbac.yaml, or explicitly
	// "user:ID" / "group:NAME".
	Subject string `yaml:"subject"`
}

// Identity is who a request acts as.
type Identity struct {
	// Token is the token's name (it appears in audit logs and trigger
	// sources, never the token).
	Token string
	// User is the id RBAC checks and four-eyes compares: the subject
	// user, or "api:<token name>" for a token that acts as a group (a
	// member of that group, added by Bind).
	User string
	// Group is the RBAC group a group token acts as.
	Group string
}

// Tokens are the API's bearer tokens.
type Tokens struct {
	mu      sync.RWMutex
	entries []TokenEntry
	byHash  map[[32]byte]*Identity
	rbac    *engine.RBACConfig // set by Bind
}

// ParseTokens reads a tokens file: a YAML list of {name, sha256,
// subject}, or the same list under a `tokens:` key.
func ParseTokens(data []byte) (*Tokens, error) {
	var list []TokenEntry
	trimmed := bytes.TrimSpace(data)
	dec := func(v any) error {
		d := yaml.NewDecoder(bytes.NewReader(trimmed))
		d.KnownFields(true)
		return d.Decode(v)
	}
	if len(trimmed) > 0 && trimmed[0] != '-' && !bytes.HasPrefix(trimmed, []byte("[")) {
		var doc struct {
			Tokens []TokenEntry `yaml:"tokens"`
		}
		if err := dec(&doc); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		list = doc.Tokens
	} else if len(trimmed) > 0 {
		if err := dec(&list); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
	}
	t := &Tokens{byHash: map[[32]byte]*Identity{}}
	seen := map[string]bool{}
	var problems []string
	for i, e := range list {
		what := fmt.Sprintf("tokens[%d]", i)
		if e.Name != "" {
			what += " (" + e.Name + ")"
		}
		sum, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(e.SHA256)))
		switch {
		case e.Name == "":
			problems = append(problems, what+": name is required")
		case seen[e.Name]:
			problems = append(problems, what+": name is used twice")
		case e.Subject == "":
			problems = append(problems, what+": subject is required (the RBAC user or group it acts as)")
		case err != nil || len(sum) != sha256.Size:
			problems = append(problems, what+": sha256 must be 64 hex digits, the SHA-256 of the token")
		default:
			var h [32]byte
			copy(h[:], sum)
			if _, dup := t.byHash[h]; dup {
				problems = append(problems, what+": the same token as an earlier entry")
				continue
			}
			t.entries = append(t.entries, e)
			t.byHash[h] = identityOf(e, nil)
		}
		seen[e.Name] = true
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("tokens: %s", strings.Join(problems, "; "))
	}
	return t, nil
}

// LoadTokens reads a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api tokens: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// NewToken makes a random token and the entry for it (dev's demo token).
func NewToken(name, subject string) (token string, e TokenEntry) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	token = "rbb_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, TokenEntry{Name: name, SHA256: hex.EncodeToString(sum[:]), Subject: subject}
}

// Add adds an entry (it must not repeat a name or token).
func (t *Tokens) Add(e TokenEntry) error {
	sum, err := hex.DecodeString(e.SHA256)
	if err != nil || len(sum) != sha256.Size || e.Name == "" || e.Subject == "" {
		return errors.New("tokens: an entry needs a name, a subject and a 64-hex-digit sha256")
	}
	var h [32]byte
	copy(h[:], sum)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byHash[h]; dup || slices.ContainsFunc(t.entries, func(x TokenEntry) bool { return x.Name == e.Name }) {
		return fmt.Errorf("tokens: %s is already there", e.Name)
	}
	t.entries = append(t.entries, e)
	t.byHash[h] = identityOf(e, t.rbac)
	return nil
}

// Len is how many tokens there are.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

// identityOf resolves an entry's subject: explicit user:/group:, else a
// group when rbac has a group of that name, else a user.
func identityOf(e TokenEntry, rbac *engine.RBACConfig) *Identity {
	s := strings.TrimSpace(e.Subject)
	switch {
	case strings.HasPrefix(s, "user:"):
		return &Identity{Token: e.Name, User: strings.TrimPrefix(s, "user:")}
	case strings.HasPrefix(s, "group:"):
		return &Identity{Token: e.Name, User: "api:" + e.Name, Group: strings.TrimPrefix(s, "group:")}
	case isGroup(rbac, s):
		return &Identity{Token: e.Name, User: "api:" + e.Name, Group: s}
	}
	return &Identity{Token: e.Name, User: s}
}

func isGroup(rbac *engine.RBACConfig, name string) bool {
	if rbac == nil {
		return false
	}
	for _, g := range rbac.Groups {
		if g.Name == name {
			return true
		}
	}
	for _, a := range rbac.Assignments {
		for _, s := range a.Subjects {
			if s.Group == name {
				return true
			}
		}
	}
	return false
}

// Bind resolves each token's subject against the RBAC config and returns
// the config to authorize with: a copy in which each token that acts as a
// group is a member ("api:<name>") of that group, so RBAC and approvals
// treat it as one. Call it before serving; nil rbac (no RBAC) returns nil.
func (t *Tokens) Bind(rbac *engine.RBACConfig) *engine.RBACConfig {
	if t == nil {
		return rbac
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rbac = rbac
	for _, e := range t.entries {
		t.byHash[sha256Hex(e.SHA256)] = identityOf(e, rbac)
	}
	if rbac == nil {
		return nil
	}
	out := *rbac
	out.Groups = make([]engine.Group, len(rbac.Groups))
	for i, g := range rbac.Groups {
		g.Users = slices.Clone(g.Users)
		out.Groups[i] = g
	}
	for _, id := range t.byHash {
		if id.Group == "" {
			continue
		}
		i := slices.IndexFunc(out.Groups, func(g engine.Group) bool { return g.Name == id.Group })
		if i < 0 {
			out.Groups = append(out.Groups, engine.Group{Name: id.Group})
			i = len(out.Groups) - 1
		}
		out.Groups[i].Users = append(out.Groups[i].Users, id.User)
	}
	return &out
}

func sha256Hex(s string) [32]byte {
	var h [32]byte
	b, _ := hex.DecodeString(strings.ToLower(strings.TrimSpace(s)))
	copy(h[:], b)
	return h
}

// lookup finds the identity of a presented token.
func (t *Tokens) lookup(token string) *Identity {
	if t == nil || token == "" {
		return nil
	}
	h := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byHash[h]
}

// Authenticate returns the identity of a request's bearer token, or nil.
func (t *Tokens) Authenticate(r *http.Request) *Identity {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return t.lookup(strings.TrimSpace(cred))
}

// Receiver guards the Alertmanager webhook receiver with the same tokens,
// sent as Alertmanager's http_config sends them: `authorization:
// {credentials: TOKEN}` (a bearer token), or `basic_auth: {username:
// NAME, password: TOKEN}` where NAME is the token's name. Anything else
// is answered 401.
func (t *Tokens) Receiver(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.Authenticate(r) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if user, pass, ok := r.BasicAuth(); ok {
			if id := t.lookup(pass); id != nil && subtle.ConstantTimeCompare([]byte(id.Token), []byte(user)) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Add("WWW-Authenticate", `Bearer realm="runbookbot"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="runbookbot"`)
		writeError(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Message: "a valid token is required (Authorization: Bearer TOKEN, or basic auth with the token's name and the token)"})
	})
}
