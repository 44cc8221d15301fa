// Package pdemu emulates the part of PagerDuty's REST API v2 that incident
// timelines use, following PagerDuty's documented requests, answers and
// errors, and refusing what PagerDuty refuses:
//
//   - every request needs "Authorization: Token token=<token>" with a known
//     token (else 401, error code 2006); writes need a JSON body (else 400,
//     2001 Invalid Input Provided) and creating incidents, updating them and
//     adding notes need a From header naming a known user's email (else
//     400, 2001 for a missing one, 1008 Requester User Not Found);
//   - GET /incidents filters by incident_key, statuses[], service_ids[],
//     with limit/offset pagination ({"incidents", "limit", "offset",
//     "more", "total"});
//   - POST /incidents ({"incident": {"type": "incident", "title",
//     "service": {"id", "type": "service_reference"}, "incident_key",
//     "urgency", "body": {"type": "incident_body", "details"},
//     "escalation_policy"}}) answers 201 {"incident": {...}}; an open
//     incident with the same incident_key on the service is refused (400);
//   - GET /incidents/{id}, PUT /incidents/{id} ({"incident": {"type":
//     "incident_reference", "status": "acknowledged"|"resolved",
//     "resolution", "escalation_level", "urgency"}}): a resolved incident
//     cannot be changed (1001 Incident Already Resolved), an unknown status
//     is 1003, an escalation level the policy lacks is 1006 Cannot
//     Escalate; an unknown incident is 404 (2100 Not Found);
//   - GET and POST /incidents/{id}/notes ({"note": {"content"}}; 201
//     {"note": {"id", "user", "content", "created_at"}});
//   - 960 requests a minute per token (Config.RateLimit): every answer
//     carries ratelimit-limit, ratelimit-remaining and ratelimit-reset; over
//     the limit it is 429 with code 2020 Rate Limit Exceeded.
//
// Errors are PagerDuty's {"error": {"message", "code", "errors"}}. Tests
// inspect the state (Incidents, Notes) and inject failures (FailNext,
// LoseNextAnswers). `runbookbot dev` can serve it as a local PagerDuty.
package pdemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Config is the emulated account.
type Config struct {
	// Tokens are the valid REST API tokens.
	Tokens []string
	// Users are the account's users; From headers must name one's email.
	Users []User
	// Services incidents can be created on.
	Services []Service
	// RateLimit is requests per minute per token (default 960).
	RateLimit int
	// Clock stamps incidents and notes and times the rate limit window.
	Clock engine.Clock
}

// User is a PagerDuty user.
type User struct {
	ID, Name, Email string
}

// Service is a PagerDuty service and its escalation policy.
type Service struct {
	ID, Name string
	// PolicyID names its escalation policy; Levels is how many rules the
	// policy has (default 3).
	PolicyID string
	Levels   int
}

// Incident is an incident as the emulator keeps it.
type Incident struct {
	ID              string
	Number          int
	Title           string
	Key             string
	Status          string
	Urgency         string
	ServiceID       string
	PolicyID        string
	Details         string
	Resolution      string
	EscalationLevel int
	CreatedAt       time.Time
	LastChangeAt    time.Time
	LastChangeBy    string
}

// Note is a note on an incident.
type Note struct {
	ID        string
	UserID    string
	Content   string
	CreatedAt time.Time
}

// Server is the emulator; it is an http.Handler.
type Server struct {
	cfg Config
	mux *http.ServeMux

	mu        sync.Mutex
	incidents []*Incident
	notes     map[string][]Note
	seq       int
	windows   map[string]*window
	failNext  []int
	lose      int
	requests  map[string]int
}

type window struct {
	start time.Time
	count int
}

// New returns an emulator for cfg.
func New(cfg Config) *Server {
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = 960
	}
	if cfg.Clock == nil {
		cfg.Clock = engine.SystemClock{}
	}
	for i := range cfg.Services {
		if cfg.Services[i].Levels <= 0 {
			cfg.Services[i].Levels = 3
		}
	}
	s := &Server{cfg: cfg, notes: map[string][]Note{}, windows: map[string]*window{}, requests: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /incidents", s.listIncidents)
	mux.HandleFunc("POST /incidents", s.createIncident)
	mux.HandleFunc("GET /incidents/{id}", s.getIncident)
	mux.HandleFunc("PUT /incidents/{id}", s.updateIncident)
	mux.HandleFunc("GET /incidents/{id}/notes", s.listNotes)
	mux.HandleFunc("POST /incidents/{id}/notes", s.createNote)
	s.mux = mux
	return s
}

// ServeHTTP authenticates, rate-limits and routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Token token=")
	if !ok || !contains(s.cfg.Tokens, token) {
		writeError(w, http.StatusUnauthorized, 2006, "Authentication failed")
		return
	}
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	win := s.windows[token]
	if win == nil || now.Sub(win.start) >= time.Minute {
		win = &window{start: now}
		s.windows[token] = win
	}
	win.count++
	remaining := s.cfg.RateLimit - win.count
	reset := int((time.Minute - now.Sub(win.start) + time.Second - 1) / time.Second)
	var fail int
	if len(s.failNext) > 0 {
		fail, s.failNext = s.failNext[0], s.failNext[1:]
	}
	s.requests[r.Method+" "+r.URL.Path]++
	s.mu.Unlock()
	w.Header().Set("ratelimit-limit", fmt.Sprint(s.cfg.RateLimit))
	w.Header().Set("ratelimit-remaining", fmt.Sprint(max(remaining, 0)))
	w.Header().Set("ratelimit-reset", fmt.Sprint(reset))
	if remaining < 0 {
		writeError(w, http.StatusTooManyRequests, 2020, "Rate Limit Exceeded")
		return
	}
	if fail != 0 {
		if fail == http.StatusTooManyRequests {
			writeError(w, fail, 2020, "Rate Limit Exceeded")
		} else {
			writeError(w, fail, 2000, "An internal error has occurred. PagerDuty team has been notified.")
		}
		return
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPut) && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Content-Type must be application/json")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// FailNext makes the next requests (one per status) fail with the given
// HTTP statuses before they are applied: 429 as PagerDuty's rate limit
// answer, anything else as an internal error.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, statuses...)
}

// LoseNextAnswers applies the next n writes but closes the connection
// instead of answering, as a network failure after PagerDuty acted would.
func (s *Server) LoseNextAnswers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose += n
}

// Requests returns how many requests reached each "METHOD /path".
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// Incidents returns every incident, oldest first.
func (s *Server) Incidents() []Incident {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Incident, len(s.incidents))
	for i, inc := range s.incidents {
		out[i] = *inc
	}
	return out
}

// Incident returns one incident.
func (s *Server) Incident(id string) (Incident, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc := s.find(id); inc != nil {
		return *inc, true
	}
	return Incident{}, false
}

// Notes returns an incident's notes, oldest first.
func (s *Server) Notes(id string) []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Note(nil), s.notes[id]...)
}

// AddIncident creates an incident as if an integration had triggered it
// (status triggered), and returns its id.
func (s *Server) AddIncident(serviceID, title, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.add(serviceID, title, key, "high", "", "", "").ID
}

func (s *Server) add(serviceID, title, key, urgency, details, policy, by string) *Incident {
	s.seq++
	now := s.cfg.Clock.Now().UTC()
	if policy == "" {
		if svc := s.service(serviceID); svc != nil {
			policy = svc.PolicyID
		}
	}
	inc := &Incident{ID: fmt.Sprintf("Q%07d", s.seq), Number: s.seq, Title: title, Key: key, Status: "triggered", Urgency: urgency,
		ServiceID: serviceID, PolicyID: policy, Details: details, EscalationLevel: 1, CreatedAt: now, LastChangeAt: now, LastChangeBy: by}
	if inc.Key == "" {
		inc.Key = fmt.Sprintf("emu-%d", s.seq)
	}
	s.incidents = append(s.incidents, inc)
	return inc
}

func (s *Server) find(id string) *Incident {
	for _, inc := range s.incidents {
		if inc.ID == id || fmt.Sprint(inc.Number) == id {
			return inc
		}
	}
	return nil
}

func (s *Server) service(id string) *Service {
	for i := range s.cfg.Services {
		if s.cfg.Services[i].ID == id {
			return &s.cfg.Services[i]
		}
	}
	return nil
}

func (s *Server) levels(policy string) int {
	for _, svc := range s.cfg.Services {
		if svc.PolicyID == policy {
			return svc.Levels
		}
	}
	return 0
}

// requester finds the user a From header names.
func (s *Server) requester(w http.ResponseWriter, r *http.Request) (User, bool) {
	from := strings.TrimSpace(r.Header.Get("From"))
	if from == "" {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "A From header with the email of a valid user is required")
		return User{}, false
	}
	for _, u := range s.cfg.Users {
		if strings.EqualFold(u.Email, from) {
			return u, true
		}
	}
	writeError(w, http.StatusBadRequest, 1008, "Requester User Not Found")
	return User{}, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status, code int, msg string, errs ...string) {
	body := map[string]any{"message": msg, "code": code}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	writeJSON(w, status, map[string]any{"error": body})
}

func sortedIncidents(list []*Incident) {
	sort.SliceStable(list, func(i, j int) bool { return list[i].Number < list[j].Number })
}
