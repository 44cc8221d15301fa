package discord

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
	"github.com/runbookbot/runbookbot/bot"
)

// No error the platform returns (and so no log line or chat message made
// from one) carries the bot token or an interaction token, whatever the
// API answers: an error body, a 500, or no connection at all.
func TestErrorsLeakNoToken(t *testing.T) {
	const token = "MTIzNDU2Nzg5.secret-bot-token"
	const itoken = "aW50ZXJhY3Rpb24tdG9rZW4tc2VjcmV0"
	handlers := map[string]http.HandlerFunc{
		"error body": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"401: Unauthorized ` + r.Header.Get("Authorization") + ` ` + r.URL.Path + `","code":0}`))
		},
		"server error": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom "+r.URL.String(), http.StatusInternalServerError)
		},
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			checkNoLeak(t, srv.URL, token, itoken)
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		checkNoLeak(t, url, token, itoken)
	})
}

func checkNoLeak(t *testing.T, url, token, itoken string) {
	t.Helper()
	p, err := New(Config{Token: token, APIURL: url})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var errs []error
	_, err = p.Check(ctx)
	errs = append(errs, err)
	_, err = p.Post(ctx, "123456789012345678", "", bot.Message{Summary: bot.R(bot.Txt("x"))})
	errs = append(errs, err)
	i := &discordgo.Interaction{ID: "223456789012345678", AppID: "323456789012345678", Token: itoken}
	p.remember("423456789012345678", i)
	errs = append(errs, p.Whisper(ctx, "123456789012345678", "discord:423456789012345678", bot.Message{Summary: bot.R(bot.Txt("x"))}))
	errs = append(errs, redact(p.s.InteractionRespond(i, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate})))
	for _, err := range errs {
		if err == nil {
			t.Fatal("a call succeeded against a broken API")
		}
		if s := err.Error(); strings.Contains(s, "secret") || strings.Contains(s, token) || strings.Contains(s, itoken) {
			t.Errorf("error leaks a token: %s", s)
		}
	}
}
