package pdemu

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine/enginetest"
)

type call struct {
	method, path, body string
	headers            map[string]string
}

type answer struct {
	status int
	code   int
	body   map[string]any
	header http.Header
}

func do(t *testing.T, url string, c call) answer {
	t.Helper()
	req, _ := http.NewRequest(c.method, url+c.path, strings.NewReader(c.body))
	h := map[string]string{"Authorization": "Token token=tok", "Content-Type": "application/json", "From": "bot@example.com",
		"Accept": "application/vnd.pagerduty+json;version=2"}
	for k, v := range c.headers {
		h[k] = v
	}
	for k, v := range h {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(b, &a.body)
	if e, ok := a.body["error"].(map[string]any); ok {
		a.code = int(e["code"].(float64))
	}
	return a
}

func start(t *testing.T, limit int) (*Server, string, *enginetest.FakeClock) {
	clock := enginetest.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	s := New(Config{Tokens: []string{"tok"}, Users: []User{{ID: "PU1", Name: "Bot", Email: "bot@example.com"}},
		Services: []Service{{ID: "PS1", Name: "api", PolicyID: "PP1", Levels: 2}}, RateLimit: limit, Clock: clock})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL, clock
}

const create = `{"incident": {"type": "incident", "title": "db down", "service": {"id": "PS1", "type": "service_reference"}, "incident_key": "k1"}}`

func TestRefusesWhatPagerDutyRefuses(t *testing.T) {
	s, url, _ := start(t, 0)
	id := s.AddIncident("PS1", "existing", "k0")
	for _, tc := range []struct {
		name       string
		call       call
		status     int
		code       int
		errorsHave string
	}{
		{"no token", call{"GET", "/incidents", "", map[string]string{"Authorization": ""}}, 401, 2006, ""},
		{"wrong scheme", call{"GET", "/incidents", "", map[string]string{"Authorization": "Bearer tok"}}, 401, 2006, ""},
		{"no From", call{"POST", "/incidents", create, map[string]string{"From": ""}}, 400, 2001, "From header"},
		{"unknown From", call{"POST", "/incidents", create, map[string]string{"From": "x@y.z"}}, 400, 1008, ""},
		{"not JSON", call{"POST", "/incidents", "{", nil}, 400, 2001, "not valid JSON"},
		{"form body", call{"POST", "/incidents", create, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 400, 2001, ""},
		{"wrong type", call{"POST", "/incidents", strings.Replace(create, `"type": "incident"`, `"type": "alert"`, 1), nil}, 400, 2001, "type must be incident"},
		{"service by name", call{"POST", "/incidents", strings.Replace(create, `"service_reference"`, `"service"`, 1), nil}, 400, 2001, "service_reference"},
		{"unknown service", call{"POST", "/incidents", strings.Replace(create, "PS1", "PS9", 1), nil}, 400, 2001, "Service not found"},
		{"open duplicate key", call{"POST", "/incidents", strings.Replace(create, "k1", "k0", 1), nil}, 400, 2001, "matching dedup key"},
		{"bad status filter", call{"GET", "/incidents?statuses[]=open", "", nil}, 400, 2001, "triggered, acknowledged, or resolved"},
		{"unknown incident", call{"GET", "/incidents/QX", "", nil}, 404, 2100, ""},
		{"bad status", call{"PUT", "/incidents/" + id, `{"incident": {"type": "incident_reference", "status": "closed"}}`, nil}, 400, 1003, ""},
		{"no escalation level 3", call{"PUT", "/incidents/" + id, `{"incident": {"type": "incident_reference", "escalation_level": 3}}`, nil}, 400, 1006, ""},
		{"empty note", call{"POST", "/incidents/" + id + "/notes", `{"note": {"content": " "}}`, nil}, 400, 2001, ""},
		{"note on nothing", call{"POST", "/incidents/QX/notes", `{"note": {"content": "x"}}`, nil}, 404, 2100, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, url, tc.call)
			if a.status != tc.status || a.code != tc.code {
				t.Fatalf("got %d code %d (%v), want %d code %d", a.status, a.code, a.body, tc.status, tc.code)
			}
			if tc.errorsHave != "" {
				b, _ := json.Marshal(a.body)
				if !strings.Contains(string(b), tc.errorsHave) {
					t.Errorf("body %s lacks %q", b, tc.errorsHave)
				}
			}
		})
	}
	if n := len(s.Incidents()); n != 1 {
		t.Errorf("refused requests created incidents: %d", n)
	}
}

func TestIncidentLifecycle(t *testing.T) {
	s, url, _ := start(t, 0)
	a := do(t, url, call{"POST", "/incidents", create, nil})
	if a.status != 201 {
		t.Fatalf("create: %d %v", a.status, a.body)
	}
	inc := a.body["incident"].(map[string]any)
	id := inc["id"].(string)
	if inc["status"] != "triggered" || inc["incident_key"] != "k1" || inc["service"].(map[string]any)["type"] != "service_reference" {
		t.Errorf("created incident = %v", inc)
	}
	list := do(t, url, call{"GET", "/incidents?incident_key=k1&statuses[]=triggered&statuses[]=acknowledged", "", nil})
	if got := list.body["incidents"].([]any); len(got) != 1 || list.body["more"] != false || list.body["limit"].(float64) != 25 {
		t.Errorf("list = %v", list.body)
	}
	n := do(t, url, call{"POST", "/incidents/" + id + "/notes", `{"note": {"content": "step ok"}}`, nil})
	if n.status != 201 || n.body["note"].(map[string]any)["user"].(map[string]any)["id"] != "PU1" {
		t.Errorf("note: %d %v", n.status, n.body)
	}
	if e := do(t, url, call{"PUT", "/incidents/" + id, `{"incident": {"type": "incident_reference", "escalation_level": 2}}`, nil}); e.status != 200 {
		t.Errorf("escalate: %d %v", e.status, e.body)
	}
	r := do(t, url, call{"PUT", "/incidents/" + id, `{"incident": {"type": "incident_reference", "status": "resolved", "resolution": "automated"}}`, nil})
	if r.status != 200 || r.body["incident"].(map[string]any)["status"] != "resolved" {
		t.Errorf("resolve: %d %v", r.status, r.body)
	}
	if again := do(t, url, call{"PUT", "/incidents/" + id, `{"incident": {"type": "incident_reference", "status": "resolved"}}`, nil}); again.code != 1001 {
		t.Errorf("resolving twice: %d %v, want 1001", again.status, again.body)
	}
	got, _ := s.Incident(id)
	if got.EscalationLevel != 2 || got.Resolution != "automated" || len(s.Notes(id)) != 1 {
		t.Errorf("state = %+v notes %d", got, len(s.Notes(id)))
	}
	// Once resolved, the key may be used again.
	if again := do(t, url, call{"POST", "/incidents", create, nil}); again.status != 201 {
		t.Errorf("re-creating a resolved key: %d %v", again.status, again.body)
	}
}

func TestRateLimit(t *testing.T) {
	_, url, clock := start(t, 2)
	for i := 0; i < 2; i++ {
		if a := do(t, url, call{"GET", "/incidents", "", nil}); a.status != 200 || a.header.Get("ratelimit-limit") != "2" {
			t.Fatalf("request %d: %d %v", i, a.status, a.header)
		}
	}
	clock.Advance(20 * time.Second)
	a := do(t, url, call{"GET", "/incidents", "", nil})
	if a.status != 429 || a.code != 2020 || a.header.Get("ratelimit-remaining") != "0" || a.header.Get("ratelimit-reset") != "40" {
		t.Fatalf("over the limit: %d code %d headers %v", a.status, a.code, a.header)
	}
	clock.Advance(40 * time.Second)
	if a := do(t, url, call{"GET", "/incidents", "", nil}); a.status != 200 {
		t.Errorf("after the reset: %d", a.status)
	}
}

func TestPageShowsIncidentsAndNotesEscaped(t *testing.T) {
	s := New(Config{Tokens: []string{"tok"}, Users: []User{{ID: "PU1", Email: "bot@example.com"}},
		Services: []Service{{ID: "PS1", Name: "shop"}}, Clock: enginetest.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))})
	srv := httptest.NewServer(s)
	defer srv.Close()
	id := s.AddIncident("PS1", "checkout <down>", "k1")
	if a := do(t, srv.URL, call{method: "POST", path: "/incidents/" + id + "/notes", body: `{"note":{"content":"Step: restart — success\n<script>x</script>"}}`}); a.status != 201 {
		t.Fatalf("note: %d", a.status)
	}
	rec := httptest.NewRecorder()
	s.Page().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	got := rec.Body.String()
	for _, want := range []string{"checkout &lt;down&gt;", "key k1", "Step: restart — success", "&lt;script&gt;", "triggered"} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<script>x") {
		t.Error("note content is not escaped")
	}
}
