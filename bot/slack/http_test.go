package slack

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const secret = "8f742231b10e8888abcd99yyyzzz85a5"

// signed is a request to the endpoint signed with key at ts.
func signed(t *testing.T, key string, ts time.Time, contentType string, body []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, EventsPath, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	stamp := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("v0:" + stamp + ":"))
	m.Write(body)
	r.Header.Set("X-Slack-Request-Timestamp", stamp)
	r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	return r
}

// endpoint is an HTTPEndpoint over a Client with no bot: enough for
// everything that is answered before a handler runs. Its log is returned.
func endpoint(t *testing.T, now time.Time) (*HTTPEndpoint, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	c := &Client{log: slog.New(slog.NewTextHandler(&logs, nil))}
	h, err := NewHTTPEndpoint(c, HTTPOptions{SigningSecret: secret, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return h, &logs
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var challenge = []byte(`{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)

func TestHTTPEndpointChecksSlackSignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"signed now", func() *http.Request { return signed(t, secret, now, "application/json", challenge) }, http.StatusOK},
		{"signed four minutes ago", func() *http.Request {
			return signed(t, secret, now.Add(-4*time.Minute), "application/json", challenge)
		}, http.StatusOK},
		{"signed six minutes ago (a replay)", func() *http.Request {
			return signed(t, secret, now.Add(-6*time.Minute), "application/json", challenge)
		}, http.StatusUnauthorized},
		{"signed six minutes ahead", func() *http.Request {
			return signed(t, secret, now.Add(6*time.Minute), "application/json", challenge)
		}, http.StatusUnauthorized},
		{"unsigned", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, EventsPath, bytes.NewReader(challenge))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, http.StatusUnauthorized},
		{"timestamp without signature", func() *http.Request {
			r := signed(t, secret, now, "application/json", challenge)
			r.Header.Del("X-Slack-Signature")
			return r
		}, http.StatusUnauthorized},
		{"another secret", func() *http.Request {
			return signed(t, "not-the-secret", now, "application/json", challenge)
		}, http.StatusUnauthorized},
		{"body changed after signing", func() *http.Request {
			r := signed(t, secret, now, "application/json", challenge)
			r.Body = io.NopCloser(bytes.NewReader(bytes.Replace(challenge, []byte("3eZ"), []byte("XeZ"), 1)))
			return r
		}, http.StatusUnauthorized},
		{"signature without v0=", func() *http.Request {
			r := signed(t, secret, now, "application/json", challenge)
			r.Header.Set("X-Slack-Signature", strings.TrimPrefix(r.Header.Get("X-Slack-Signature"), "v0="))
			return r
		}, http.StatusUnauthorized},
		{"timestamp not a number", func() *http.Request {
			r := signed(t, secret, now, "application/json", challenge)
			r.Header.Set("X-Slack-Request-Timestamp", "soon")
			return r
		}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := endpoint(t, now)
			w := serve(h, tt.req())
			if got := w.Code; got != tt.want {
				t.Fatalf("status = %d, want %d (%s)", got, tt.want, w.Body)
			}
			if tt.want == http.StatusOK && !strings.Contains(w.Body.String(), `"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"`) {
				t.Errorf("url_verification answer = %s, want the challenge", w.Body)
			}
			if tt.want != http.StatusOK && strings.Contains(w.Body.String(), "challenge") {
				t.Errorf("a refused request was answered: %s", w.Body)
			}
			noSecret(t, w.Body.String()+logs.String())
		})
	}
}

// noSecret fails when the signing secret shows in s.
func noSecret(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, secret) {
		t.Errorf("the signing secret leaked: %s", s)
	}
}

// Slack sends a command or an interaction once: the same signed request
// again, even within the window, is a replay.
func TestHTTPEndpointRefusesAnExactReplay(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h, logs := endpoint(t, now)
	body := rejectForm(" ")
	first := signed(t, secret, now, formType, body)
	again := signed(t, secret, now, formType, body) // the same headers and body, sent twice
	if w := serve(h, first); w.Code != http.StatusOK {
		t.Fatalf("first: %d", w.Code)
	}
	if w := serve(h, again); w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "errors") {
		t.Errorf("the same signed request again: %d %s, want 401", w.Code, w.Body)
	}
	if got := len(h.c.AckLatencies()); got != 1 {
		t.Errorf("the form reached the bot %d times, want 1", got)
	}
	noSecret(t, logs.String())
}

func TestHTTPEndpointOnlyTakesPOST(t *testing.T) {
	h, _ := endpoint(t, time.Now())
	w := serve(h, httptest.NewRequest(http.MethodGet, EventsPath, nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
		t.Errorf("GET: %d Allow=%q", w.Code, w.Header().Get("Allow"))
	}
}

// An event Slack sends again (a retry after a lost 200, or a repeat of
// its event_id) reaches the bot once; another event still does.
func TestHTTPEndpointHandlesAnEventOnce(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h, _ := endpoint(t, now)
	event := func(id string) []byte {
		return []byte(`{"type":"event_callback","event_id":"` + id + `","event_time":1800000000,` +
			`"event":{"type":"reaction_added","user":"U1","reaction":"eyes","item":{"type":"message","channel":"C1","ts":"1800000000.000100"}}}`)
	}
	send := func(body []byte, at time.Time, retry int) {
		t.Helper()
		r := signed(t, secret, at, "application/json", body)
		if retry > 0 {
			r.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
			r.Header.Set("X-Slack-Retry-Reason", "http_timeout")
		}
		if w := serve(h, r); w.Code != http.StatusOK {
			t.Fatalf("event %s: %d %s", body, w.Code, w.Body)
		}
	}
	send(event("Ev01"), now, 0)
	send(event("Ev01"), now, 1) // signed the same second: the same signature
	send(event("Ev01"), now.Add(time.Second), 1)
	send(event("Ev01"), now.Add(2*time.Second), 2)
	if got := len(h.c.AckLatencies()); got != 1 {
		t.Errorf("the event and three retries reached the bot %d times, want 1", got)
	}
	send(event("Ev02"), now.Add(3*time.Second), 0)
	if got := len(h.c.AckLatencies()); got != 2 {
		t.Errorf("after another event: %d handled, want 2", got)
	}
}

// A form submitted without its required field is answered in the response
// body, so Slack shows the error in the form (Socket Mode puts it in the
// ack).
func TestHTTPEndpointAnswersFieldErrorsInTheBody(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h, _ := endpoint(t, now)
	w := serve(h, signed(t, secret, now, formType, rejectForm(" ")))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	var got struct {
		Action string            `json:"response_action"`
		Errors map[string]string `json:"errors"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if got.Action != "errors" || got.Errors["comment"] == "" {
		t.Errorf("answer = %s, want the comment field's error", w.Body)
	}
}

// rejectForm is the reject form submitted with comment, as Slack posts it.
func rejectForm(comment string) []byte {
	payload := `{"type":"view_submission","user":{"id":"U1"},"view":{"id":"V1","callback_id":"reject",` +
		`"private_metadata":"{\"l\":\"reject ex-1/a-1\",\"c\":\"C1\"}",` +
		`"state":{"values":{"comment":{"comment":{"type":"plain_text_input","value":` + strconv.Quote(comment) + `}}}}}}`
	return []byte(url.Values{"payload": {payload}}.Encode())
}

func TestNewHTTPEndpointNeedsASecret(t *testing.T) {
	if _, err := NewHTTPEndpoint(&Client{}, HTTPOptions{}); err != ErrNoSigningSecret {
		t.Errorf("err = %v, want ErrNoSigningSecret", err)
	}
}
