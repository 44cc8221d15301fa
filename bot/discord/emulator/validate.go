package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// formErrors collects Discord's nested "Invalid Form Body" (50035) errors:
// {"embeds":{"0":{"title":{"_errors":[{"code":…,"message":…}]}}}}.
type formErrors struct{ root obj }

func (f *formErrors) add(path, code, msg string) {
	if f.root == nil {
		f.root = obj{}
	}
	cur := f.root
	if path != "" {
		for _, p := range strings.Split(path, ".") {
			next, ok := cur[p].(obj)
			if !ok {
				next = obj{}
				cur[p] = next
			}
			cur = next
		}
	}
	list, _ := cur["_errors"].([]obj)
	cur["_errors"] = append(list, obj{"code": code, "message": msg})
}

func (f *formErrors) maxLen(path, v string, n int) {
	if utf8.RuneCountInString(v) > n {
		f.add(path, "BASE_TYPE_MAX_LENGTH", fmt.Sprintf("Must be %d or fewer in length.", n))
	}
}

func (f *formErrors) between(path, v string, lo, hi int) {
	if n := utf8.RuneCountInString(v); n < lo || n > hi {
		f.add(path, "BASE_TYPE_BAD_LENGTH", fmt.Sprintf("Must be between %d and %d in length.", lo, hi))
	}
}

func (f *formErrors) required(path string) {
	f.add(path, "BASE_TYPE_REQUIRED", "This field is required")
}

func (f *formErrors) err() *apiError {
	if f.root == nil {
		return nil
	}
	return &apiError{http.StatusBadRequest, 50035, "Invalid Form Body", f.root}
}

// messageBody is the JSON of a message create/edit, webhook execute or
// interaction response's data. Pointers and raw fields tell "absent" from
// "empty" for edits.
type messageBody struct {
	Content          *string         `json:"content"`
	Embeds           json.RawMessage `json:"embeds"`
	Components       json.RawMessage `json:"components"`
	Flags            *int            `json:"flags"`
	AllowedMentions  json.RawMessage `json:"allowed_mentions"`
	MessageReference *struct {
		MessageID string `json:"message_id"`
	} `json:"message_reference"`
	Username    string          `json:"username"`
	AvatarURL   string          `json:"avatar_url"`
	Attachments json.RawMessage `json:"attachments"`
	StickerIDs  json.RawMessage `json:"sticker_ids"`
	Poll        json.RawMessage `json:"poll"`
	ThreadName  string          `json:"thread_name"`

	// Interaction response only.
	CustomID string          `json:"custom_id"`
	Title    string          `json:"title"`
	Choices  json.RawMessage `json:"choices"`
}

// content is a validated, normalised message body.
type content struct {
	text       string
	embeds     json.RawMessage
	components json.RawMessage
	flags      int
	// set reports which fields the body carried (for edits).
	hasText, hasEmbeds, hasComponents, hasFlags bool
	mentions                                    *mentionRules
}

// checkMessage validates b like Discord. allowedFlags are the flags the
// endpoint accepts; create demands something to show.
func checkMessage(b *messageBody, allowedFlags int, create bool) (*content, *apiError) {
	var f formErrors
	c := &content{}
	if b.Content != nil {
		c.text, c.hasText = *b.Content, true
		f.maxLen("content", c.text, 2000)
	}
	if b.Flags != nil {
		c.flags, c.hasFlags = *b.Flags, true
		if c.flags&^allowedFlags != 0 {
			f.add("flags", "MESSAGE_FLAGS_INVALID", "Invalid flags")
		}
	}
	present := func(raw json.RawMessage) bool { return len(raw) > 0 && (string(raw) != "null" || !create) }
	if present(b.Embeds) {
		c.hasEmbeds = true
		c.embeds = checkEmbeds(&f, b.Embeds)
	}
	if present(b.Components) {
		c.hasComponents = true
		c.components = checkComponents(&f, b.Components, c.flags&FlagComponentsV2 != 0)
	}
	if c.flags&FlagComponentsV2 != 0 && (c.text != "" || !isEmptyJSON(c.embeds)) {
		f.add("content", "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
			"The 'content', 'embeds', 'stickers', and 'poll' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2")
	}
	m, e := parseAllowedMentions(&f, b.AllowedMentions)
	c.mentions = m
	if e := f.err(); e != nil {
		return nil, e
	}
	if e != nil {
		return nil, e
	}
	if create && strings.TrimSpace(c.text) == "" && isEmptyJSON(c.embeds) && isEmptyJSON(c.components) &&
		isEmptyJSON(b.StickerIDs) && isEmptyJSON(b.Attachments) && (len(b.Poll) == 0 || string(b.Poll) == "null") {
		return nil, errEmptyMessage()
	}
	return c, nil
}

// checkEmbeds validates embeds and returns them with "type":"rich" added.
func checkEmbeds(f *formErrors, raw json.RawMessage) json.RawMessage {
	var embeds []map[string]any
	if err := json.Unmarshal(raw, &embeds); err != nil {
		f.add("embeds", "BASE_TYPE_ARRAY", "Must be an array.")
		return nil
	}
	if len(embeds) > 10 {
		f.add("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
	}
	total := 0
	str := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
	for i, e := range embeds {
		p := "embeds." + strconv.Itoa(i) + "."
		count := func(path, v string, limit int) {
			f.maxLen(p+path, v, limit)
			total += utf8.RuneCountInString(v)
		}
		count("title", str(e, "title"), 256)
		count("description", str(e, "description"), 4096)
		if c, ok := e["color"].(float64); ok && (c < 0 || c > 0xFFFFFF || c != float64(int(c))) {
			f.add(p+"color", "NUMBER_TYPE_MAX", "int value should be less than or equal to 16777215.")
		}
		if ft, ok := e["footer"].(map[string]any); ok {
			if str(ft, "text") == "" {
				f.required(p + "footer.text")
			}
			count("footer.text", str(ft, "text"), 2048)
		}
		if a, ok := e["author"].(map[string]any); ok {
			if str(a, "name") == "" {
				f.required(p + "author.name")
			}
			count("author.name", str(a, "name"), 256)
		}
		fields, _ := e["fields"].([]any)
		if len(fields) > 25 {
			f.add(p+"fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
		}
		for j, x := range fields {
			fl, _ := x.(map[string]any)
			fp := "fields." + strconv.Itoa(j) + "."
			if str(fl, "name") == "" {
				f.required(p + fp + "name")
			}
			if str(fl, "value") == "" {
				f.required(p + fp + "value")
			}
			count(fp+"name", str(fl, "name"), 256)
			count(fp+"value", str(fl, "value"), 1024)
		}
		if _, ok := e["type"]; !ok {
			e["type"] = "rich"
		}
	}
	if total > 6000 {
		f.add("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
	}
	return mustJSON(embeds)
}

// mentionRules is a parsed allowed_mentions; nil means Discord's default
// (everything in the content pings).
type mentionRules struct {
	Parse       []string `json:"parse"`
	Users       []string `json:"users"`
	Roles       []string `json:"roles"`
	RepliedUser bool     `json:"replied_user"`
}

func parseAllowedMentions(f *formErrors, raw json.RawMessage) (*mentionRules, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m mentionRules
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errBadJSON()
	}
	for i, p := range m.Parse {
		if p != "users" && p != "roles" && p != "everyone" {
			f.add("allowed_mentions.parse."+strconv.Itoa(i), "BASE_TYPE_CHOICES", "Value must be one of ('roles', 'users', 'everyone').")
		}
	}
	if slices.Contains(m.Parse, "users") && len(m.Users) > 0 {
		f.add("allowed_mentions", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", "parse:[\"users\"] and users: [ids...] are mutually exclusive.")
	}
	if slices.Contains(m.Parse, "roles") && len(m.Roles) > 0 {
		f.add("allowed_mentions", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", "parse:[\"roles\"] and roles: [ids...] are mutually exclusive.")
	}
	if len(m.Users) > 100 {
		f.add("allowed_mentions.users", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
	}
	return &m, nil
}

var (
	userMentionRE = regexp.MustCompile(`<@!?(\d+)>`)
	roleMentionRE = regexp.MustCompile(`<@&(\d+)>`)
)

// applyMentionsLocked fills m's pings from its content and the rules.
// Caller holds s.mu.
func (s *Server) applyMentionsLocked(m *Message, rules *mentionRules) {
	m.Mentions, m.MentionRoles, m.MentionEveryone = nil, nil, false
	for _, sm := range userMentionRE.FindAllStringSubmatch(m.Content, -1) {
		id := sm[1]
		if s.users[id] == nil || slices.Contains(m.Mentions, id) {
			continue
		}
		if rules == nil || slices.Contains(rules.Parse, "users") || slices.Contains(rules.Users, id) {
			m.Mentions = append(m.Mentions, id)
		}
	}
	for _, sm := range roleMentionRE.FindAllStringSubmatch(m.Content, -1) {
		id := sm[1]
		if r := s.roles[id]; r == nil || r.GuildID != m.GuildID || slices.Contains(m.MentionRoles, id) {
			continue
		}
		if rules == nil || slices.Contains(rules.Parse, "roles") || slices.Contains(rules.Roles, id) {
			m.MentionRoles = append(m.MentionRoles, id)
		}
	}
	if strings.Contains(m.Content, "@everyone") || strings.Contains(m.Content, "@here") {
		m.MentionEveryone = rules == nil || slices.Contains(rules.Parse, "everyone")
	}
}
