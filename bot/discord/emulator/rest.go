package emulator

import (
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// auth is what a route requires in the Authorization header.
type auth int

const (
	authBot  auth = iota // "Bot <token>"
	authNone             // the token is in the URL (webhooks, interaction callbacks)
)

// route is one REST endpoint. Its key, e.g. "POST /channels/{channel_id}/messages",
// names it in Calls and in rate-limit settings.
type route struct {
	method string
	segs   []string
	key    string
	auth   auth
	global bool // counts against the global rate limit
	handle func(*call)
}

// call is one REST request being served.
type call struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	rt     *route
	params map[string]string
	body   []byte
	query  url.Values
	hdr    http.Header // extra response headers (rate limits)
}

func (c *call) p(name string) string { return c.params[name] }

// apiError is Discord's JSON error: {"message","code","errors"?}.
type apiError struct {
	status  int
	code    int
	message string
	errors  obj
}

func (e *apiError) body() obj {
	o := obj{"message": e.message, "code": e.code}
	if e.errors != nil {
		o["errors"] = e.errors
	}
	return o
}

// Discord's errors, by JSON code.
func errUnauthorized() *apiError {
	return &apiError{http.StatusUnauthorized, 0, "401: Unauthorized", nil}
}
func errNotFound() *apiError { return &apiError{http.StatusNotFound, 0, "404: Not Found", nil} }
func errMethod() *apiError {
	return &apiError{http.StatusMethodNotAllowed, 0, "405: Method Not Allowed", nil}
}
func errUnknownChannel() *apiError {
	return &apiError{http.StatusNotFound, 10003, "Unknown Channel", nil}
}
func errUnknownGuild() *apiError { return &apiError{http.StatusNotFound, 10004, "Unknown Guild", nil} }
func errUnknownMember() *apiError {
	return &apiError{http.StatusNotFound, 10007, "Unknown Member", nil}
}
func errUnknownMessage() *apiError {
	return &apiError{http.StatusNotFound, 10008, "Unknown Message", nil}
}
func errUnknownUser() *apiError { return &apiError{http.StatusNotFound, 10013, "Unknown User", nil} }
func errUnknownWebhook() *apiError {
	return &apiError{http.StatusNotFound, 10015, "Unknown Webhook", nil}
}
func errUnknownCommand() *apiError {
	return &apiError{http.StatusNotFound, 10063, "Unknown application command", nil}
}
func errUnknownInteraction() *apiError {
	return &apiError{http.StatusNotFound, 10062, "Unknown interaction", nil}
}
func errAlreadyAcked() *apiError {
	return &apiError{http.StatusBadRequest, 40060, "Interaction has already been acknowledged.", nil}
}
func errMissingAccess() *apiError {
	return &apiError{http.StatusForbidden, 50001, "Missing Access", nil}
}
func errEmptyMessage() *apiError {
	return &apiError{http.StatusBadRequest, 50006, "Cannot send an empty message", nil}
}
func errInvalidWebhookToken() *apiError {
	return &apiError{http.StatusUnauthorized, 50027, "Invalid Webhook Token", nil}
}
func errThreadExists() *apiError {
	return &apiError{http.StatusBadRequest, 160004, "A thread has already been created for this message", nil}
}
func errBadJSON() *apiError {
	return &apiError{http.StatusBadRequest, 50109, "The request body contains invalid JSON.", nil}
}

// routes is the REST surface, matched in order (literal segments such as
// "@original" and "@me" before parameters).
func (s *Server) routes() []*route {
	mk := func(method, path string, a auth, global bool, h func(*call)) *route {
		segs := strings.Split(strings.Trim(path, "/"), "/")
		return &route{method: method, segs: segs, key: method + " " + path, auth: a, global: global, handle: h}
	}
	wh := "/webhooks/{webhook_id}/{webhook_token}"
	app := "/applications/{application_id}"
	gapp := app + "/guilds/{guild_id}"
	msg := "/channels/{channel_id}/messages/{message_id}"
	return []*route{
		mk("GET", "/gateway", authNone, true, s.getGateway),
		mk("GET", "/gateway/bot", authBot, true, s.getGatewayBot),
		mk("GET", "/users/@me", authBot, true, s.getMe),
		mk("POST", "/users/@me/channels", authBot, true, s.createDM),
		mk("GET", "/users/{user_id}", authBot, true, s.getUser),

		mk("GET", app+"/commands", authBot, true, s.listCommands),
		mk("PUT", app+"/commands", authBot, true, s.overwriteCommands),
		mk("POST", app+"/commands", authBot, true, s.createCommand),
		mk("GET", app+"/commands/{command_id}", authBot, true, s.getCommand),
		mk("PATCH", app+"/commands/{command_id}", authBot, true, s.editCommand),
		mk("DELETE", app+"/commands/{command_id}", authBot, true, s.deleteCommand),
		mk("GET", gapp+"/commands", authBot, true, s.listCommands),
		mk("PUT", gapp+"/commands", authBot, true, s.overwriteCommands),
		mk("POST", gapp+"/commands", authBot, true, s.createCommand),
		mk("GET", gapp+"/commands/{command_id}", authBot, true, s.getCommand),
		mk("PATCH", gapp+"/commands/{command_id}", authBot, true, s.editCommand),
		mk("DELETE", gapp+"/commands/{command_id}", authBot, true, s.deleteCommand),

		mk("POST", "/interactions/{interaction_id}/{interaction_token}/callback", authNone, false, s.interactionCallback),

		mk("GET", wh, authNone, false, s.getWebhookWithToken),
		mk("POST", wh, authNone, false, s.executeWebhook),
		mk("GET", wh+"/messages/@original", authNone, false, s.getWebhookMessage),
		mk("PATCH", wh+"/messages/@original", authNone, false, s.editWebhookMessage),
		mk("DELETE", wh+"/messages/@original", authNone, false, s.deleteWebhookMessage),
		mk("GET", wh+"/messages/{message_id}", authNone, false, s.getWebhookMessage),
		mk("PATCH", wh+"/messages/{message_id}", authNone, false, s.editWebhookMessage),
		mk("DELETE", wh+"/messages/{message_id}", authNone, false, s.deleteWebhookMessage),

		mk("GET", "/channels/{channel_id}", authBot, true, s.getChannel),
		mk("GET", "/channels/{channel_id}/messages", authBot, true, s.listMessages),
		mk("POST", "/channels/{channel_id}/messages", authBot, true, s.createMessage),
		mk("GET", msg, authBot, true, s.getMessage),
		mk("PATCH", msg, authBot, true, s.editMessage),
		mk("DELETE", msg, authBot, true, s.deleteMessage),
		mk("PUT", msg+"/reactions/{emoji}/@me", authBot, true, s.addReaction),
		mk("DELETE", msg+"/reactions/{emoji}/@me", authBot, true, s.removeReaction),
		mk("POST", msg+"/threads", authBot, true, s.startThreadFromMessage),
		mk("POST", "/channels/{channel_id}/threads", authBot, true, s.startThread),
		mk("PUT", "/channels/{channel_id}/thread-members/@me", authBot, true, s.joinThread),
		mk("DELETE", "/channels/{channel_id}/thread-members/@me", authBot, true, s.leaveThread),
		mk("GET", "/channels/{channel_id}/thread-members", authBot, true, s.listThreadMembers),
		mk("POST", "/channels/{channel_id}/typing", authBot, true, s.typing),
		mk("POST", "/channels/{channel_id}/webhooks", authBot, true, s.createChannelWebhook),

		mk("GET", "/guilds/{guild_id}", authBot, true, s.getGuild),
		mk("GET", "/guilds/{guild_id}/roles", authBot, true, s.getRoles),
		mk("GET", "/guilds/{guild_id}/channels", authBot, true, s.getGuildChannels),
		mk("GET", "/guilds/{guild_id}/threads/active", authBot, true, s.getActiveThreads),
		mk("GET", "/guilds/{guild_id}/members", authBot, true, s.listMembers),
		mk("GET", "/guilds/{guild_id}/members/{user_id}", authBot, true, s.getMember),
	}
}

// Routes returns the keys of every REST route the emulator serves, for
// Calls and SetLimit.
func (s *Server) Routes() []string {
	var out []string
	for _, rt := range s.routes() {
		out = append(out, rt.key)
	}
	return out
}

// match finds the route for method and path segments. pathOK reports
// whether some route has the path (for 405 vs 404).
func match(routes []*route, method string, segs []string) (rt *route, params map[string]string, pathOK bool) {
	for _, r := range routes {
		if len(r.segs) != len(segs) {
			continue
		}
		p := map[string]string{}
		ok := true
		for i, seg := range r.segs {
			if strings.HasPrefix(seg, "{") {
				if segs[i] == "" || strings.HasPrefix(segs[i], "@") && seg != "{user_id}" {
					ok = false
					break
				}
				p[strings.Trim(seg, "{}")] = segs[i]
			} else if seg != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		pathOK = true
		if r.method == method {
			return r, p, true
		}
	}
	return nil, nil, pathOK
}

// apiPath strips "/api/", "/api/v9/" or "/api/v10/" and reports whether the
// version is one the emulator speaks.
func apiPath(p string) (string, bool) {
	rest := strings.TrimPrefix(p, "/api")
	if v, after, ok := strings.Cut(strings.TrimPrefix(rest, "/"), "/"); ok && strings.HasPrefix(v, "v") {
		n, err := strconv.Atoi(v[1:])
		if err != nil {
			return rest, true // not a version: a path such as /api/webhooks/…
		}
		return "/" + after, n == 9 || n == 10
	}
	return rest, true
}

// handleAPI serves the REST API.
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	path, okVersion := apiPath(r.URL.EscapedPath())
	if !okVersion {
		writeJSON(w, http.StatusBadRequest, obj{"message": "Invalid API version", "code": 50041})
		return
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, seg := range segs {
		if u, err := url.PathUnescape(seg); err == nil {
			segs[i] = u
		}
	}
	rt, params, pathOK := match(s.routes(), r.Method, segs)
	if rt == nil {
		s.mu.Lock()
		s.calls["unknown"]++
		s.mu.Unlock()
		s.logf("%s %s: no route", r.Method, r.URL.Path)
		if pathOK {
			writeError(w, errMethod())
		} else {
			writeError(w, errNotFound())
		}
		return
	}
	body, err := readBody(r)
	c := &call{s: s, w: w, r: r, rt: rt, params: params, body: body, query: r.URL.Query(), hdr: http.Header{}}
	s.mu.Lock()
	s.calls[rt.key]++
	s.notifyLocked()
	if rt.auth == authBot && !s.authorized(r.Header.Get("Authorization")) {
		s.mu.Unlock()
		s.logf("%s: 401", rt.key)
		writeError(w, errUnauthorized())
		return
	}
	retry, scope := s.rateLimitLocked(c)
	s.mu.Unlock()
	if scope != "" {
		s.logf("%s: 429 %s (retry after %.3fs)", rt.key, scope, retry)
		write429(w, c.hdr, retry, scope)
		return
	}
	if err != nil {
		c.fail(errBadJSON())
		return
	}
	s.logf("%s %s", r.Method, r.URL.Path)
	rt.handle(c)
}

// authorized checks "Authorization: Bot <token>".
func (s *Server) authorized(h string) bool {
	tok, ok := strings.CutPrefix(h, "Bot ")
	return ok && tok == s.opts.Token
}

// readBody returns a JSON body, or the payload_json part of a multipart
// body (files are accepted and ignored).
func readBody(r *http.Request) ([]byte, error) {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return nil, err
			}
			if p.FormName() == "payload_json" {
				return io.ReadAll(io.LimitReader(p, 8<<20))
			}
		}
	}
	return io.ReadAll(io.LimitReader(r.Body, 8<<20))
}

// decode unmarshals the body into v; an empty body decodes as {}.
func (c *call) decode(v any) bool {
	b := c.body
	if len(strings.TrimSpace(string(b))) == 0 {
		b = []byte("{}")
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.fail(errBadJSON())
		return false
	}
	return true
}

func (c *call) fail(e *apiError) {
	c.s.logf("%s: %d %d %s", c.rt.key, e.status, e.code, e.message)
	copyHeader(c.w.Header(), c.hdr)
	writeError(c.w, e)
}

func (c *call) ok(status int, v any) {
	copyHeader(c.w.Header(), c.hdr)
	if status == http.StatusNoContent {
		c.w.WriteHeader(status)
		return
	}
	writeJSON(c.w, status, v)
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mustJSON(v))
}

func writeError(w http.ResponseWriter, e *apiError) { writeJSON(w, e.status, e.body()) }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
