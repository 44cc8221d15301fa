// Package api is runbookbot's HTTP API, /api/v1: start executions, read
// them and their history, follow their events as Server-Sent Events, decide
// their approvals and cancel them. It is documented by openapi.yaml (served
// at /api/v1/openapi.yaml), and a test checks the server against it.
//
// Every endpoint but the document needs a bearer token from the tokens file
// (see Tokens); the token's subject is who the request acts as, under the
// same RBAC and four-eyes rules as chat. Errors are JSON:
//
//	{"error": {"code": "bad_parameters", "message": "...",
//	           "parameters": [{"name": "service", "problem": "is required"}]}}
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// OpenAPI is the API's OpenAPI 3 document.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Engine is what the API drives; *engine.Engine implements it.
type Engine interface {
	Start(ctx context.Context, req engine.StartRequest) (string, error)
	Decide(ctx context.Context, req engine.DecisionRequest) (engine.DecisionResult, error)
	Cancel(ctx context.Context, id, user string) error
	Catalog() *engine.Catalog
	Store() engine.Store
	Subscribe(f func(engine.Event)) (unsubscribe func())
}

// Authorizer answers whether a user holds a permission;
// *commands.Authorizer implements it.
type Authorizer interface {
	Allowed(ctx context.Context, user, perm string) (bool, error)
}

// Keys remembers Idempotency-Keys; the Redis and embedded stores have one
// each (integrations/redis, integrations/embedded), MemoryKeys is for one
// process.
type Keys interface {
	// Remember binds key to value for ttl unless it is bound, and returns
	// what key is bound to (value, when this call bound it).
	Remember(ctx context.Context, key, value string, ttl time.Duration) (string, error)
	// Set binds key to value for ttl, whatever it was bound to.
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	// Forget unbinds key when it is still bound to value.
	Forget(ctx context.Context, key, value string) error
}

// Config wires a Server.
type Config struct {
	Engine Engine
	Tokens *Tokens
	// Auth checks permissions (nil: every token may do everything, as
	// chat without RBAC; four-eyes still applies).
	Auth Authorizer
	// Keys keeps Idempotency-Keys (default: in memory).
	Keys Keys
	// Platform and Channel are where the thread of an API-started run is
	// posted so that chat sees it (e.g. "slack", "#ops"); empty: none.
	Platform, Channel string
	Clock             engine.Clock
	Logger            *slog.Logger
	// Poll is how often an event stream looks for events another replica
	// wrote (default 2s); KeepAlive how often an idle stream sends a
	// comment (default 15s).
	Poll, KeepAlive time.Duration
	// KeyTTL is how long an Idempotency-Key is remembered (default 24h).
	KeyTTL time.Duration
}

// Server serves /api/v1.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the API server.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = engine.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Keys == nil {
		cfg.Keys = NewMemoryKeys(cfg.Clock.Now)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.KeyTTL <= 0 {
		cfg.KeyTTL = 24 * time.Hour
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(OpenAPI)
	})
	s.mux.HandleFunc("POST /api/v1/executions", s.authed(s.startExecution))
	s.mux.HandleFunc("GET /api/v1/executions", s.authed(s.history))
	s.mux.HandleFunc("GET /api/v1/executions/{id}", s.authed(s.getExecution))
	s.mux.HandleFunc("GET /api/v1/executions/{id}/events", s.authed(s.events))
	s.mux.HandleFunc("POST /api/v1/executions/{id}/approvals", s.authed(s.decide))
	s.mux.HandleFunc("POST /api/v1/executions/{id}/cancel", s.authed(s.cancel))
	s.mux.HandleFunc("/api/v1/", s.notFound)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// routes are the endpoints with the methods they take, for 405 answers.
var routes = []struct {
	re     *regexp.Regexp
	method string
}{
	{regexp.MustCompile(`^/api/v1/openapi\.yaml$`), "GET"},
	{regexp.MustCompile(`^/api/v1/executions$`), "GET, POST"},
	{regexp.MustCompile(`^/api/v1/executions/[^/]+$`), "GET"},
	{regexp.MustCompile(`^/api/v1/executions/[^/]+/events$`), "GET"},
	{regexp.MustCompile(`^/api/v1/executions/[^/]+/(approvals|cancel)$`), "POST"},
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	for _, rt := range routes {
		if rt.re.MatchString(r.URL.Path) {
			w.Header().Set("Allow", rt.method)
			writeError(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed", Message: r.Method + " is not allowed here; use " + rt.method})
			return
		}
	}
	writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no such endpoint; see /api/v1/openapi.yaml"})
}

type ctxKey struct{}

// authed requires a valid bearer token and puts its identity in the
// request's context.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := s.cfg.Tokens.Authenticate(r)
		if id == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="runbookbot"`)
			writeError(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Message: "a valid bearer token is required (Authorization: Bearer TOKEN)"})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	}
}

func identity(r *http.Request) *Identity { return r.Context().Value(ctxKey{}).(*Identity) }

// allowed checks perm for the request's identity; on refusal it answers
// 403, logs the refusal for audit, and returns false.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, perm, action string) bool {
	if s.cfg.Auth == nil {
		return true
	}
	id := identity(r)
	ok, err := s.cfg.Auth.Allowed(r.Context(), id.User, perm)
	if ok {
		return true
	}
	msg := "you are not allowed to " + action + " (needs " + perm + ")"
	if err != nil {
		// The authorizer's errors are meant for the user (a chat group
		// that could not be resolved).
		msg = err.Error()
	}
	s.log.Warn("audit: refused", "audit", true, "user", id.User, "token", id.Token, "via", "api", "action", action, "permission", perm, "reason", msg)
	writeError(w, http.StatusForbidden, apiError{Code: "forbidden", Message: msg})
	return false
}

// apiError is the body of every error answer.
type apiError struct {
	Code       string         `json:"code"`
	Message    string         `json:"message"`
	Parameters []paramProblem `json:"parameters,omitempty"`
}

// paramProblem names one bad parameter (of the runbook, of the query or
// of the request body).
type paramProblem struct {
	Name    string `json:"name"`
	Problem string `json:"problem"`
	Hint    string `json:"hint,omitempty"`
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, map[string]apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// internal answers 500 with nothing of the cause, which goes to the log.
func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error("api: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, apiError{Code: "internal", Message: "internal error; the details are in the bot's log"})
}

// lookupExecution reads an execution's summary, answering 404 (and false)
// when there is none.
func (s *Server) lookupExecution(w http.ResponseWriter, r *http.Request) (engine.Summary, bool) {
	id := r.PathValue("id")
	sum, err := s.cfg.Engine.Store().Get(r.Context(), id)
	if errors.Is(err, engine.ErrNotFound) || (err == nil && sum.ExecutionID == "") {
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no execution " + quote(id)})
		return sum, false
	}
	if err != nil {
		s.internal(w, "reading an execution", err)
		return sum, false
	}
	return sum, true
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
