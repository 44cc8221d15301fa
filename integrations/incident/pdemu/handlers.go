package pdemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// answer writes a successful write's answer, or, when an answer is to be
// lost, closes the connection without one (the write stands).
func (s *Server) answer(w http.ResponseWriter, status int, v any) {
	s.mu.Lock()
	lose := s.lose > 0
	if lose {
		s.lose--
	}
	s.mu.Unlock()
	if lose {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
	}
	writeJSON(w, status, v)
}

func (s *Server) incidentJSON(inc *Incident) map[string]any {
	ref := func(id, typ, summary string) map[string]any {
		return map[string]any{"id": id, "type": typ, "summary": summary}
	}
	svcName := inc.ServiceID
	if svc := s.service(inc.ServiceID); svc != nil {
		svcName = svc.Name
	}
	out := map[string]any{
		"id": inc.ID, "type": "incident", "summary": fmt.Sprintf("[#%d] %s", inc.Number, inc.Title),
		"self":                  "https://api.pagerduty.com/incidents/" + inc.ID,
		"html_url":              "https://emulated.pagerduty.com/incidents/" + inc.ID,
		"incident_number":       inc.Number,
		"title":                 inc.Title,
		"created_at":            inc.CreatedAt.Format(time.RFC3339),
		"status":                inc.Status,
		"incident_key":          inc.Key,
		"urgency":               inc.Urgency,
		"service":               ref(inc.ServiceID, "service_reference", svcName),
		"last_status_change_at": inc.LastChangeAt.Format(time.RFC3339),
		"assignments":           []any{},
		"acknowledgements":      []any{},
		"body":                  map[string]any{"type": "incident_body", "details": inc.Details},
	}
	if inc.PolicyID != "" {
		out["escalation_policy"] = ref(inc.PolicyID, "escalation_policy_reference", inc.PolicyID)
	}
	return out
}

func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	statuses := q["statuses[]"]
	for _, st := range statuses {
		if st != "triggered" && st != "acknowledged" && st != "resolved" {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Status must be a list of triggered, acknowledged, or resolved.")
			return
		}
	}
	limit, offset := 25, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "limit must be a positive integer")
			return
		}
		limit = min(n, 100)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "offset must be a non-negative integer")
			return
		}
		offset = n
	}
	key, services := q.Get("incident_key"), q["service_ids[]"]
	s.mu.Lock()
	var match []*Incident
	for _, inc := range s.incidents {
		if key != "" && inc.Key != key {
			continue
		}
		if len(statuses) > 0 && !contains(statuses, inc.Status) {
			continue
		}
		if len(services) > 0 && !contains(services, inc.ServiceID) {
			continue
		}
		match = append(match, inc)
	}
	sortedIncidents(match)
	list := []map[string]any{}
	for i := offset; i < len(match) && i < offset+limit; i++ {
		list = append(list, s.incidentJSON(match[i]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"incidents": list, "limit": limit, "offset": offset, "more": offset+limit < len(match), "total": nil})
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inc := s.find(r.PathValue("id"))
	if inc == nil {
		writeError(w, http.StatusNotFound, 2100, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incident": s.incidentJSON(inc)})
}

type refIn struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

type createIn struct {
	Incident *struct {
		Type             string  `json:"type"`
		Title            string  `json:"title"`
		Service          *refIn  `json:"service"`
		IncidentKey      string  `json:"incident_key"`
		Urgency          string  `json:"urgency"`
		EscalationPolicy *refIn  `json:"escalation_policy"`
		Body             *bodyIn `json:"body"`
	} `json:"incident"`
}

type bodyIn struct {
	Type    string `json:"type"`
	Details string `json:"details"`
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "The request body is not valid JSON")
		return false
	}
	return true
}

func (s *Server) createIncident(w http.ResponseWriter, r *http.Request) {
	user, ok := s.requester(w, r)
	if !ok {
		return
	}
	var in createIn
	if !decode(w, r, &in) {
		return
	}
	i := in.Incident
	var errs []string
	switch {
	case i == nil:
		errs = append(errs, "incident is required")
	default:
		if i.Type != "incident" {
			errs = append(errs, "Incident type must be incident")
		}
		if strings.TrimSpace(i.Title) == "" {
			errs = append(errs, "Title cannot be empty")
		}
		if i.Service == nil || i.Service.ID == "" || i.Service.Type != "service_reference" {
			errs = append(errs, "Service must be a service_reference")
		}
		if i.Urgency != "" && i.Urgency != "high" && i.Urgency != "low" {
			errs = append(errs, "Urgency must be high or low")
		}
		if i.Body != nil && i.Body.Type != "incident_body" {
			errs = append(errs, "Body type must be incident_body")
		}
		if i.EscalationPolicy != nil && i.EscalationPolicy.Type != "escalation_policy_reference" {
			errs = append(errs, "Escalation policy must be an escalation_policy_reference")
		}
	}
	if len(errs) > 0 {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", errs...)
		return
	}
	s.mu.Lock()
	svc := s.service(i.Service.ID)
	if svc == nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Service not found")
		return
	}
	policy := svc.PolicyID
	if i.EscalationPolicy != nil {
		if s.levels(i.EscalationPolicy.ID) == 0 {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Escalation Policy Not Found")
			return
		}
		policy = i.EscalationPolicy.ID
	}
	if i.IncidentKey != "" {
		for _, inc := range s.incidents {
			if inc.Key == i.IncidentKey && inc.ServiceID == svc.ID && inc.Status != "resolved" {
				s.mu.Unlock()
				writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Open incident with matching dedup key already exists on this service")
				return
			}
		}
	}
	urgency := i.Urgency
	if urgency == "" {
		urgency = "high"
	}
	details := ""
	if i.Body != nil {
		details = i.Body.Details
	}
	inc := s.add(svc.ID, i.Title, i.IncidentKey, urgency, details, policy, user.ID)
	out := s.incidentJSON(inc)
	s.mu.Unlock()
	s.answer(w, http.StatusCreated, map[string]any{"incident": out})
}

type updateIn struct {
	Incident *struct {
		Type            string `json:"type"`
		Status          string `json:"status"`
		Resolution      string `json:"resolution"`
		EscalationLevel *int   `json:"escalation_level"`
		Urgency         string `json:"urgency"`
	} `json:"incident"`
}

func (s *Server) updateIncident(w http.ResponseWriter, r *http.Request) {
	user, ok := s.requester(w, r)
	if !ok {
		return
	}
	var in updateIn
	if !decode(w, r, &in) {
		return
	}
	u := in.Incident
	if u == nil || (u.Type != "incident" && u.Type != "incident_reference") {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "incident with type incident_reference is required")
		return
	}
	if u.Urgency != "" && u.Urgency != "high" && u.Urgency != "low" {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Urgency must be high or low")
		return
	}
	s.mu.Lock()
	inc := s.find(r.PathValue("id"))
	if inc == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 2100, "Not Found")
		return
	}
	fail := func(status, code int, msg string, errs ...string) {
		s.mu.Unlock()
		writeError(w, status, code, msg, errs...)
	}
	if u.Status != "" && u.Status != "acknowledged" && u.Status != "resolved" {
		fail(http.StatusBadRequest, 1003, "Invalid Status Provided")
		return
	}
	if inc.Status == "resolved" && (u.Status != "" || u.EscalationLevel != nil) {
		fail(http.StatusBadRequest, 1001, "Incident Already Resolved")
		return
	}
	if u.EscalationLevel != nil {
		if lv := *u.EscalationLevel; lv < 1 || lv > s.levels(inc.PolicyID) {
			fail(http.StatusBadRequest, 1006, "Cannot Escalate", fmt.Sprintf("Escalation level %d does not exist in the escalation policy", lv))
			return
		}
	}
	now := s.cfg.Clock.Now().UTC()
	if u.Status != "" {
		inc.Status = u.Status
		inc.LastChangeAt, inc.LastChangeBy = now, user.ID
		if u.Status == "resolved" {
			inc.Resolution = u.Resolution
		}
	}
	if u.EscalationLevel != nil {
		inc.EscalationLevel = *u.EscalationLevel
		inc.Status = "triggered" // escalating re-triggers for the new level
		inc.LastChangeAt, inc.LastChangeBy = now, user.ID
	}
	if u.Urgency != "" {
		inc.Urgency = u.Urgency
	}
	out := s.incidentJSON(inc)
	s.mu.Unlock()
	s.answer(w, http.StatusOK, map[string]any{"incident": out})
}

func (s *Server) noteJSON(n Note) map[string]any {
	name := n.UserID
	for _, u := range s.cfg.Users {
		if u.ID == n.UserID {
			name = u.Name
		}
	}
	return map[string]any{"id": n.ID, "user": map[string]any{"id": n.UserID, "type": "user_reference", "summary": name},
		"channel": map[string]any{"summary": "The PagerDuty REST API"}, "content": n.Content, "created_at": n.CreatedAt.Format(time.RFC3339)}
}

func (s *Server) listNotes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inc := s.find(r.PathValue("id"))
	if inc == nil {
		writeError(w, http.StatusNotFound, 2100, "Not Found")
		return
	}
	list := []map[string]any{}
	for _, n := range s.notes[inc.ID] {
		list = append(list, s.noteJSON(n))
	}
	writeJSON(w, http.StatusOK, map[string]any{"notes": list})
}

func (s *Server) createNote(w http.ResponseWriter, r *http.Request) {
	user, ok := s.requester(w, r)
	if !ok {
		return
	}
	var in struct {
		Note *struct {
			Content string `json:"content"`
		} `json:"note"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Note == nil || strings.TrimSpace(in.Note.Content) == "" {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Note content cannot be empty")
		return
	}
	s.mu.Lock()
	inc := s.find(r.PathValue("id"))
	if inc == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 2100, "Not Found")
		return
	}
	s.seq++
	n := Note{ID: fmt.Sprintf("N%07d", s.seq), UserID: user.ID, Content: in.Note.Content, CreatedAt: s.cfg.Clock.Now().UTC()}
	s.notes[inc.ID] = append(s.notes[inc.ID], n)
	out := s.noteJSON(n)
	s.mu.Unlock()
	s.answer(w, http.StatusCreated, map[string]any{"note": out})
}
