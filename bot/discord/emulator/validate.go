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

// knownComponentTypes are the types Discord (and discordgo v0.29) know in
// messages; 4 (text input) and 18 (label) are modal-only.
var knownComponentTypes = map[int]bool{1: true, 2: true, 3: true, 5: true, 6: true, 7: true, 8: true,
	9: true, 10: true, 11: true, 12: true, 13: true, 14: true, 17: true}

// componentChecker walks a component tree, validating and assigning ids.
type componentChecker struct {
	f       *formErrors
	nextID  int
	ids     map[string]bool
	count   int
	inModal bool
}

// checkComponents validates message components (legacy action rows, or
// the Components V2 layout when v2) and returns them with ids assigned.
func checkComponents(f *formErrors, raw json.RawMessage, v2 bool) json.RawMessage {
	var comps []map[string]any
	if err := json.Unmarshal(raw, &comps); err != nil {
		f.add("components", "BASE_TYPE_ARRAY", "Must be an array.")
		return nil
	}
	ck := &componentChecker{f: f, ids: map[string]bool{}}
	if !v2 && len(comps) > 5 {
		f.add("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
	}
	for i, c := range comps {
		p := "components." + strconv.Itoa(i)
		t := intOf(c["type"])
		if !v2 && t != 1 {
			f.add(p+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1,).")
			continue
		}
		ck.check(p, c, 0)
	}
	if v2 && ck.count > 40 {
		f.add("components", "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED", "The specified component exceeds the maximum number of components (40)")
	}
	ck.assignIDs(comps)
	return mustJSON(comps)
}

func intOf(v any) int {
	n, _ := v.(float64)
	return int(n)
}

func (ck *componentChecker) customID(p string, c map[string]any) {
	id, _ := c["custom_id"].(string)
	if id == "" {
		ck.f.required(p + ".custom_id")
		return
	}
	ck.f.between(p+".custom_id", id, 1, 100)
	if ck.ids[id] {
		ck.f.add(p+".custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
	}
	ck.ids[id] = true
}

func (ck *componentChecker) check(p string, c map[string]any, depth int) {
	ck.count++
	t := intOf(c["type"])
	known := knownComponentTypes[t] || ck.inModal && (t == 4 || t == 18)
	if !known {
		ck.f.add(p+".type", "UNION_TYPE_CHOICES", fmt.Sprintf("Value of field \"type\" must be one of %s.", validTypes(ck.inModal)))
		return
	}
	children, _ := c["components"].([]any)
	switch t {
	case 1: // action row
		if depth > 1 {
			ck.f.add(p+".type", "COMPONENT_LAYOUT_INVALID", "Action rows cannot be nested")
		}
		if len(children) == 0 {
			ck.f.add(p+".components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
		}
		width := 0
		for j, x := range children {
			ch, _ := x.(map[string]any)
			switch intOf(ch["type"]) {
			case 2:
				width++
			case 1, 9, 10, 11, 12, 13, 14, 17, 18:
				ck.f.add(p+".components."+strconv.Itoa(j)+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (2, 3, 4, 5, 6, 7, 8).")
				continue
			default:
				width += 5
			}
			ck.check(p+".components."+strconv.Itoa(j), ch, depth+1)
		}
		if width > 5 {
			ck.f.add(p+".components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "The specified component exceeds the maximum width")
		}
	case 2: // button
		label, _ := c["label"].(string)
		ck.f.maxLen(p+".label", label, 80)
		switch style := intOf(c["style"]); style {
		case 1, 2, 3, 4:
			ck.customID(p, c)
			if _, ok := c["url"]; ok {
				ck.f.add(p+".url", "BUTTON_COMPONENT_INVALID_URL", "A button with a custom_id cannot have a url")
			}
			if label == "" && c["emoji"] == nil {
				ck.f.add(p, "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED", "A label or an emoji is required")
			}
		case 5:
			u, _ := c["url"].(string)
			if u == "" {
				ck.f.required(p + ".url")
			}
			ck.f.maxLen(p+".url", u, 512)
			if _, ok := c["custom_id"]; ok {
				ck.f.add(p+".custom_id", "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED", "A link button cannot have a custom_id")
			}
		case 6:
			if c["sku_id"] == nil {
				ck.f.required(p + ".sku_id")
			}
		default:
			ck.f.add(p+".style", "BASE_TYPE_CHOICES", "Value must be one of (1, 2, 3, 4, 5, 6).")
		}
	case 3, 5, 6, 7, 8: // selects
		ck.customID(p, c)
		ph, _ := c["placeholder"].(string)
		ck.f.maxLen(p+".placeholder", ph, 150)
		if mn, ok := c["min_values"].(float64); ok && (mn < 0 || mn > 25) {
			ck.f.add(p+".min_values", "NUMBER_TYPE_MAX", "int value should be less than or equal to 25.")
		}
		if mx, ok := c["max_values"].(float64); ok && (mx < 1 || mx > 25) {
			ck.f.add(p+".max_values", "NUMBER_TYPE_MAX", "int value should be less than or equal to 25.")
		}
		if t == 3 {
			opts, _ := c["options"].([]any)
			if len(opts) == 0 || len(opts) > 25 {
				ck.f.add(p+".options", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length.")
			}
			for j, x := range opts {
				o, _ := x.(map[string]any)
				op := p + ".options." + strconv.Itoa(j)
				l, _ := o["label"].(string)
				v, _ := o["value"].(string)
				ck.f.between(op+".label", l, 1, 100)
				ck.f.between(op+".value", v, 1, 100)
			}
		}
	case 4: // text input (modals)
		ck.customID(p, c)
		if st := intOf(c["style"]); st != 1 && st != 2 {
			ck.f.add(p+".style", "BASE_TYPE_CHOICES", "Value must be one of (1, 2).")
		}
		if l, ok := c["label"].(string); ok || depth > 0 && !ck.inLabel(p) {
			ck.f.between(p+".label", l, 1, 45)
		}
		if mn, ok := c["min_length"].(float64); ok && (mn < 0 || mn > 4000) {
			ck.f.add(p+".min_length", "NUMBER_TYPE_MAX", "int value should be less than or equal to 4000.")
		}
		if mx, ok := c["max_length"].(float64); ok && (mx < 1 || mx > 4000) {
			ck.f.add(p+".max_length", "NUMBER_TYPE_MAX", "int value should be less than or equal to 4000.")
		}
		v, _ := c["value"].(string)
		ck.f.maxLen(p+".value", v, 4000)
		ph, _ := c["placeholder"].(string)
		ck.f.maxLen(p+".placeholder", ph, 100)
	case 18: // label wrapping one modal component
		l, _ := c["label"].(string)
		ck.f.between(p+".label", l, 1, 45)
		inner, _ := c["component"].(map[string]any)
		if inner == nil {
			ck.f.required(p + ".component")
		} else {
			ck.check(p+".component", inner, depth+1)
		}
	case 9, 17: // section, container
		for j, x := range children {
			ch, _ := x.(map[string]any)
			ck.check(p+".components."+strconv.Itoa(j), ch, depth+1)
		}
		if acc, ok := c["accessory"].(map[string]any); ok {
			ck.check(p+".accessory", acc, depth+1)
		}
	}
}

// inLabel reports whether path p is the component inside a label.
func (ck *componentChecker) inLabel(p string) bool { return strings.HasSuffix(p, ".component") }

func validTypes(modal bool) string {
	if modal {
		return "(1, 4, 10, 18)"
	}
	return "(1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17)"
}

// assignIDs numbers components without an id depth-first from 1, as
// Discord does.
func (ck *componentChecker) assignIDs(comps []map[string]any) {
	used := map[int]bool{}
	var collect func(c map[string]any)
	collect = func(c map[string]any) {
		if id := intOf(c["id"]); id > 0 {
			used[id] = true
		}
		walkChildren(c, collect)
	}
	var assign func(c map[string]any)
	assign = func(c map[string]any) {
		if intOf(c["id"]) == 0 {
			ck.nextID++
			for used[ck.nextID] {
				ck.nextID++
			}
			c["id"] = ck.nextID
		}
		walkChildren(c, assign)
	}
	for _, c := range comps {
		collect(c)
	}
	for _, c := range comps {
		assign(c)
	}
}

func walkChildren(c map[string]any, fn func(map[string]any)) {
	children, _ := c["components"].([]any)
	for _, x := range children {
		if ch, ok := x.(map[string]any); ok {
			fn(ch)
		}
	}
	for _, k := range []string{"accessory", "component"} {
		if ch, ok := c[k].(map[string]any); ok {
			fn(ch)
		}
	}
}

// checkModal validates a MODAL (type 9) response's data and returns its
// components with ids assigned.
func checkModal(b *messageBody) (json.RawMessage, *apiError) {
	var f formErrors
	if b.CustomID == "" {
		f.required("data.custom_id")
	} else {
		f.between("data.custom_id", b.CustomID, 1, 100)
	}
	if b.Title == "" {
		f.required("data.title")
	} else {
		f.between("data.title", b.Title, 1, 45)
	}
	var comps []map[string]any
	if err := json.Unmarshal(b.Components, &comps); err != nil || len(comps) == 0 || len(comps) > 5 {
		f.add("data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
	}
	ck := &componentChecker{f: &f, ids: map[string]bool{}, inModal: true}
	for i, c := range comps {
		p := "data.components." + strconv.Itoa(i)
		switch intOf(c["type"]) {
		case 1:
			children, _ := c["components"].([]any)
			if len(children) != 1 {
				f.add(p+".components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 1 in length.")
			}
			for j, x := range children {
				ch, _ := x.(map[string]any)
				if intOf(ch["type"]) != 4 {
					f.add(p+".components."+strconv.Itoa(j)+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (4,).")
					continue
				}
				ck.check(p+".components."+strconv.Itoa(j), ch, 1)
			}
		case 18, 10:
			ck.check(p, c, 0)
		default:
			f.add(p+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1, 10, 18).")
		}
	}
	if e := f.err(); e != nil {
		return nil, e
	}
	ck.assignIDs(comps)
	return mustJSON(comps), nil
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
