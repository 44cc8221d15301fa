package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/commands/api"
)

func TestParseTokensFile(t *testing.T) {
	sum := "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3" // sha256("123")
	tests := []struct {
		name    string
		file    string
		wantErr string
	}{
		{"a list", "- {name: ci, sha256: " + sum + ", subject: alice}\n", ""},
		{"under tokens:", "tokens:\n  - {name: ci, sha256: " + sum + ", subject: alice}\n", ""},
		{"empty", "", ""},
		{"no subject", "- {name: ci, sha256: " + sum + "}\n", "subject is required"},
		{"not a hash", "- {name: ci, sha256: hunter2, subject: alice}\n", "64 hex digits"},
		{"a name twice", "- {name: ci, sha256: " + sum + ", subject: a}\n- {name: ci, sha256: " + strings.Repeat("0", 64) + ", subject: b}\n", "used twice"},
		{"a token twice", "- {name: a, sha256: " + sum + ", subject: a}\n- {name: b, sha256: " + strings.ToUpper(sum) + ", subject: b}\n", "same token"},
		{"an unknown field", "- {name: ci, token: \"123\", sha256: " + sum + ", subject: a}\n", "field token not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := api.ParseTokens([]byte(tc.file))
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v, want none", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "123") {
				t.Errorf("the error repeats a token: %v", err)
			}
		})
	}
}

func TestAlertmanagerReceiverAuth(t *testing.T) {
	toks, err := api.ParseTokens(tokensFile())
	if err != nil {
		t.Fatal(err)
	}
	reached := 0
	h := toks.Receiver(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached++; w.WriteHeader(http.StatusOK) }))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tests := []struct {
		name string
		set  func(*http.Request)
		want int
	}{
		{"bearer, as authorization: {credentials: TOKEN}", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tokens["bob"]) }, 200},
		{"basic, as basic_auth with the token's name", func(r *http.Request) { r.SetBasicAuth("bob", tokens["bob"]) }, 200},
		{"basic under another token's name", func(r *http.Request) { r.SetBasicAuth("alice", tokens["bob"]) }, 401},
		{"basic with a wrong password", func(r *http.Request) { r.SetBasicAuth("bob", "guess") }, 401},
		{"a wrong bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer guess") }, 401},
		{"nothing", func(*http.Request) {}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := reached
			req, _ := http.NewRequest("POST", srv.URL+"/alertmanager", strings.NewReader(`{"alerts":[]}`))
			tc.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if passed := reached > before; passed != (tc.want == 200) {
				t.Errorf("the receiver was reached: %v", passed)
			}
			if tc.want == 401 && len(resp.Header.Values("WWW-Authenticate")) != 2 {
				t.Errorf("401 challenges with %v, want Bearer and Basic", resp.Header.Values("WWW-Authenticate"))
			}
		})
	}
}

func TestNewTokenMatchesItsEntry(t *testing.T) {
	tok, e := api.NewToken("demo", "bob")
	toks, err := api.ParseTokens(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := toks.Add(e); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if id := toks.Authenticate(req); id == nil || id.User != "bob" || id.Token != "demo" {
		t.Fatalf("the new token authenticates as %+v, want bob via demo", id)
	}
	if strings.Contains(e.SHA256, tok) {
		t.Fatalf("the entry holds the token")
	}
}
