package pdemu

import (
	"html/template"
	"net/http"
	"time"
)

// pageTemplate shows every incident, newest first, with its notes.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>PagerDuty emulator: incidents</title>
<meta http-equiv="refresh" content="5">
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
.incident{border:1px solid #ccc;border-radius:6px;padding:1em;margin-bottom:1.2em}
.status{font-weight:bold;text-transform:uppercase;padding:0 .4em;border-radius:3px}
.triggered{background:#fdd}.acknowledged{background:#ffd}.resolved{background:#dfd}
.note{border-left:3px solid #88a;margin:.5em 0;padding:.2em .8em;white-space:pre-wrap;font-family:monospace;font-size:90%}
.meta{color:#666;font-size:90%}
</style></head><body>
<h1>Incidents</h1>
<p class="meta">The PagerDuty REST API v2 emulator runbookbot writes incident timelines to. This page refreshes itself.</p>
{{range .}}<div class="incident" id="{{.ID}}">
<h2>#{{.Number}} {{.Title}} <span class="status {{.Status}}">{{.Status}}</span></h2>
<p class="meta">{{.ID}} · key {{.Key}} · {{.Urgency}} urgency · escalation level {{.EscalationLevel}} · opened {{.Created}}</p>
{{if .Resolution}}<p><b>Resolution:</b> {{.Resolution}}</p>{{end}}
{{range .Notes}}<div class="note"><span class="meta">{{.At}}</span>
{{.Content}}</div>{{else}}<p class="meta">No notes.</p>{{end}}
</div>{{else}}<p>No incidents yet. Run a runbook (or send an alert) and its timeline appears here.</p>{{end}}
</body></html>
`))

type pageIncident struct {
	Incident
	Created string
	Notes   []pageNote
}

type pageNote struct {
	At      string
	Content string
}

// Page is a read-only HTML view of the incidents and their notes, for
// people (the REST API needs a token a browser does not send). It is not
// part of PagerDuty's API; `runbookbot dev` serves it at /.
func (s *Server) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, 2001, "Invalid Input Provided")
			return
		}
		s.mu.Lock()
		list := make([]pageIncident, 0, len(s.incidents))
		for i := len(s.incidents) - 1; i >= 0; i-- {
			inc := s.incidents[i]
			p := pageIncident{Incident: *inc, Created: inc.CreatedAt.Format(time.RFC3339)}
			for _, n := range s.notes[inc.ID] {
				p.Notes = append(p.Notes, pageNote{At: n.CreatedAt.Format(time.RFC3339), Content: n.Content})
			}
			list = append(list, p)
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = pageTemplate.Execute(w, list)
	})
}
