package emulator

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RunCommand runs a slash command as userID in a channel or thread, the way
// a user types it in Discord's client: "/runbook run name:restart-web
// env:prod". The first word is the command, then the sub-command group and
// sub-command if the command has them, then option:value pairs (quote
// values with spaces: reason:"not now"). Options are checked against the
// registered command (required, types, choices, ranges) as the client
// does. It dispatches INTERACTION_CREATE and returns the interaction ID.
func (s *Server) RunCommand(userID, channelRef, line string) (string, error) {
	return s.command(userID, channelRef, line, "")
}

// Autocomplete sends an autocomplete interaction for the command line as
// typed so far, with option focused being typed; the bot's choices land
// in Interaction(id).Choices. It returns the interaction ID.
func (s *Server) Autocomplete(userID, channelRef, line, focused string) (string, error) {
	if focused == "" {
		return "", errorf("autocomplete needs the focused option")
	}
	return s.command(userID, channelRef, line, focused)
}

func (s *Server) command(userID, channelRef, line, focused string) (string, error) {
	words, err := splitCommandLine(line)
	if err != nil {
		return "", err
	}
	if len(words) == 0 {
		return "", errorf("empty command")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ch, err := s.userAndChannelLocked(userID, channelRef)
	if err != nil {
		return "", err
	}
	name := strings.TrimPrefix(words[0], "/")
	cmd := s.findCommandLocked(ch.GuildID, name)
	if cmd == nil {
		return "", errorf("no command /%s registered for guild %q", name, ch.GuildID)
	}
	resolved := obj{}
	opts, err := s.buildOptionsLocked(cmd.Options, words[1:], focused, ch.GuildID, resolved)
	if err != nil {
		return "", errorf("/%s: %w", name, err)
	}
	data := obj{"id": cmd.ID, "name": cmd.Name, "type": 1}
	if len(opts) > 0 {
		data["options"] = opts
	}
	if cmd.GuildID != "" {
		data["guild_id"] = cmd.GuildID
	}
	if len(resolved) > 0 {
		data["resolved"] = resolved
	}
	typ := InteractionCommand
	if focused != "" {
		typ = InteractionAutocomplete
	}
	in := &interaction{Interaction: Interaction{Type: typ, User: u.ID, ChannelID: ch.ID, GuildID: ch.GuildID, CommandName: cmd.Name}, data: data}
	return s.startInteractionLocked(in), nil
}

// buildOptionsLocked turns the words after the command into the nested
// options of an interaction.
func (s *Server) buildOptionsLocked(defs []CommandOption, words []string, focused, guildID string, resolved obj) ([]obj, error) {
	if len(defs) > 0 && (defs[0].Type == OptionSubCommand || defs[0].Type == OptionSubCommandGroup) {
		if len(words) == 0 {
			return nil, fmt.Errorf("choose a sub-command: %s", optionNames(defs))
		}
		for _, d := range defs {
			if d.Name == words[0] {
				inner, err := s.buildOptionsLocked(d.Options, words[1:], focused, guildID, resolved)
				if err != nil {
					return nil, err
				}
				return []obj{{"type": d.Type, "name": d.Name, "options": nonNilObjs(inner)}}, nil
			}
		}
		return nil, fmt.Errorf("unknown sub-command %q (have %s)", words[0], optionNames(defs))
	}
	given := map[string]string{}
	var order []string
	for _, w := range words {
		k, v, ok := strings.Cut(w, ":")
		if !ok {
			return nil, fmt.Errorf("%q is not option:value", w)
		}
		if _, dup := given[k]; dup {
			return nil, fmt.Errorf("option %q given twice", k)
		}
		given[k] = v
		order = append(order, k)
	}
	var out []obj
	for _, k := range order {
		d := findOption(defs, k)
		if d == nil {
			return nil, fmt.Errorf("unknown option %q (have %s)", k, optionNames(defs))
		}
		o := obj{"type": d.Type, "name": d.Name}
		if k == focused {
			if !d.Autocomplete {
				return nil, fmt.Errorf("option %q has no autocomplete", k)
			}
			o["value"], o["focused"] = given[k], true
		} else {
			v, err := s.optionValueLocked(d, given[k], guildID, resolved)
			if err != nil {
				return nil, fmt.Errorf("option %s: %w", k, err)
			}
			o["value"] = v
		}
		out = append(out, o)
	}
	if focused == "" {
		for _, d := range defs {
			if _, ok := given[d.Name]; d.Required && !ok {
				return nil, fmt.Errorf("missing required option %q", d.Name)
			}
		}
	} else if _, ok := given[focused]; !ok {
		return nil, fmt.Errorf("focused option %q is not in the line", focused)
	}
	return out, nil
}

func nonNilObjs(v []obj) []obj {
	if v == nil {
		return []obj{}
	}
	return v
}

func findOption(defs []CommandOption, name string) *CommandOption {
	for i := range defs {
		if defs[i].Name == name {
			return &defs[i]
		}
	}
	return nil
}

func optionNames(defs []CommandOption) string {
	var n []string
	for _, d := range defs {
		n = append(n, d.Name)
	}
	return strings.Join(n, ", ")
}

// optionValueLocked converts a typed value the way the client does, and
// fills "resolved" for users, roles and channels.
func (s *Server) optionValueLocked(d *CommandOption, raw, guildID string, resolved obj) (any, error) {
	var v any
	switch d.Type {
	case OptionString:
		n := utf8.RuneCountInString(raw)
		if d.MinLength != nil && n < *d.MinLength || d.MaxLength != nil && n > *d.MaxLength || n > 6000 {
			return nil, fmt.Errorf("length %d out of range", n)
		}
		v = raw
	case OptionInteger:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", raw)
		}
		if err := checkRange(d, float64(n)); err != nil {
			return nil, err
		}
		v = n
	case OptionNumber:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%q is not a number", raw)
		}
		if err := checkRange(d, f); err != nil {
			return nil, err
		}
		v = f
	case OptionBoolean:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, fmt.Errorf("%q is not true/false", raw)
		}
		v = b
	case OptionUser, OptionMentionable:
		if u := s.resolveUserLocked(strings.Trim(raw, "<@!>")); u != nil {
			addResolved(resolved, "users", u.ID, s.wireUserLocked(u.ID))
			if guildID != "" {
				addResolved(resolved, "members", u.ID, s.wireMemberLocked(guildID, u.ID, false))
			}
			return u.ID, nil
		}
		if d.Type == OptionMentionable {
			if r := s.resolveRoleLocked(guildID, raw); r != nil {
				addResolved(resolved, "roles", r.ID, wireRole(r, 0))
				return r.ID, nil
			}
		}
		return nil, fmt.Errorf("no user %q", raw)
	case OptionRole:
		r := s.resolveRoleLocked(guildID, raw)
		if r == nil {
			return nil, fmt.Errorf("no role %q", raw)
		}
		addResolved(resolved, "roles", r.ID, wireRole(r, 0))
		return r.ID, nil
	case OptionChannel:
		c := s.resolveChannelLocked(strings.Trim(raw, "<#>"))
		if c == nil {
			return nil, fmt.Errorf("no channel %q", raw)
		}
		w := s.wireChannelLocked(c)
		w["permissions"] = "2248473465835073"
		addResolved(resolved, "channels", c.ID, w)
		return c.ID, nil
	default:
		return nil, fmt.Errorf("option type %d cannot be typed", d.Type)
	}
	if len(d.Choices) > 0 {
		for _, ch := range d.Choices {
			if fmt.Sprint(ch.Value) == fmt.Sprint(v) || ch.Name == raw {
				return ch.Value, nil
			}
		}
		return nil, fmt.Errorf("%q is not one of the choices", raw)
	}
	return v, nil
}

func checkRange(d *CommandOption, f float64) error {
	if d.MinValue != nil && f < *d.MinValue || d.MaxValue != nil && f > *d.MaxValue {
		return fmt.Errorf("%v out of range", f)
	}
	return nil
}

func addResolved(resolved obj, kind, id string, v obj) {
	m, _ := resolved[kind].(obj)
	if m == nil {
		m = obj{}
		resolved[kind] = m
	}
	m[id] = v
}

func (s *Server) resolveRoleLocked(guildID, ref string) *Role {
	ref = strings.Trim(ref, "<@&>")
	if r := s.roles[ref]; r != nil && r.GuildID == guildID {
		return r
	}
	for _, id := range s.roleOrder {
		if r := s.roles[id]; r.GuildID == guildID && r.Name == ref {
			return r
		}
	}
	return nil
}

// splitCommandLine splits on spaces, keeping "quoted values" (after a
// colon, too: reason:"not now") together.
func splitCommandLine(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, has := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQuote, has = !inQuote, true
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			if has {
				out = append(out, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteRune(r)
			has = true
		}
	}
	if inQuote {
		return nil, errorf("unterminated quote in %q", line)
	}
	if has {
		out = append(out, cur.String())
	}
	return out, nil
}

func (s *Server) userAndChannelLocked(userRef, channelRef string) (*User, *channel, error) {
	u := s.resolveUserLocked(userRef)
	if u == nil {
		return nil, nil, errorf("no user %q", userRef)
	}
	c := s.resolveChannelLocked(channelRef)
	if c == nil {
		return nil, nil, errorf("no channel %q", channelRef)
	}
	return u, c, nil
}

// visibleMessageLocked finds a message userID can see: a channel message or
// one of their ephemerals.
func (s *Server) visibleMessageLocked(userID, messageID string) *Message {
	m := s.findMessageLocked(messageID)
	if m == nil || m.VisibleTo != "" && m.VisibleTo != userID {
		return nil
	}
	return m
}

// findComponent finds the component with customID in a component tree.
func findComponent(raw json.RawMessage, customID string) map[string]any {
	var comps []map[string]any
	if decodeJSON(raw, &comps) != nil {
		return nil
	}
	var found map[string]any
	var walk func(c map[string]any)
	walk = func(c map[string]any) {
		if found != nil {
			return
		}
		if id, ok := c["custom_id"].(string); ok && id == customID {
			found = c
			return
		}
		walkChildren(c, walk)
	}
	for _, c := range comps {
		walk(c)
	}
	return found
}

// ClickButton clicks, as userID, the button with customID on a message
// (a channel message or one of the user's ephemerals) and returns the
// interaction ID. Disabled and link buttons cannot be clicked.
func (s *Server) ClickButton(userID, messageID, customID string) (string, error) {
	return s.component(userID, messageID, customID, nil, true)
}

// SelectOptions picks values in the select menu customID on a message and
// returns the interaction ID.
func (s *Server) SelectOptions(userID, messageID, customID string, values ...string) (string, error) {
	return s.component(userID, messageID, customID, values, false)
}

func (s *Server) component(userID, messageID, customID string, values []string, button bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.resolveUserLocked(userID)
	if u == nil {
		return "", errorf("no user %q", userID)
	}
	m := s.visibleMessageLocked(u.ID, messageID)
	if m == nil {
		return "", errorf("user %s sees no message %s", u.Username, messageID)
	}
	c := findComponent(m.Components, customID)
	if c == nil {
		return "", errorf("message %s has no component %q", messageID, customID)
	}
	if d, _ := c["disabled"].(bool); d {
		return "", errorf("component %q is disabled", customID)
	}
	t := intOf(c["type"])
	data := obj{"custom_id": customID, "component_type": t}
	if id := intOf(c["id"]); id > 0 {
		data["id"] = id
	}
	switch {
	case button && t != 2:
		return "", errorf("component %q is not a button", customID)
	case button && intOf(c["style"]) == 5:
		return "", errorf("%q is a link button: it opens a URL and sends no interaction", customID)
	case !button && (t < 3 || t > 8 || t == 4):
		return "", errorf("component %q is not a select menu", customID)
	case !button:
		if err := checkSelection(c, values); err != nil {
			return "", errorf("select %q: %w", customID, err)
		}
		data["values"] = append([]string{}, values...)
	}
	in := &interaction{Interaction: Interaction{Type: InteractionComponent, User: u.ID, ChannelID: m.ChannelID,
		GuildID: m.GuildID, CustomID: customID, Values: values, MessageID: m.ID}, data: data, message: m}
	return s.startInteractionLocked(in), nil
}

func checkSelection(c map[string]any, values []string) error {
	mn, mx := 1, 1
	if v, ok := c["min_values"].(float64); ok {
		mn = int(v)
	}
	if v, ok := c["max_values"].(float64); ok {
		mx = int(v)
	}
	if len(values) < mn || len(values) > mx {
		return fmt.Errorf("pick between %d and %d values", mn, mx)
	}
	if intOf(c["type"]) != 3 {
		return nil
	}
	opts, _ := c["options"].([]any)
	for _, v := range values {
		ok := false
		for _, x := range opts {
			if o, _ := x.(map[string]any); o["value"] == v {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%q is not an option", v)
		}
	}
	return nil
}

// SubmitModal fills in and submits the modal modalRef (a Modal.ID or its
// custom_id) open for userID. values maps text-input custom_ids to text;
// required inputs and length limits are enforced as the client does. It
// returns the interaction ID.
func (s *Server) SubmitModal(userID, modalRef string, values map[string]string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.resolveUserLocked(userID)
	if u == nil {
		return "", errorf("no user %q", userID)
	}
	md := s.findModalLocked(u.ID, modalRef)
	if md == nil {
		return "", errorf("no open modal %q for %s", modalRef, u.Username)
	}
	var rows []map[string]any
	_ = json.Unmarshal(md.Components, &rows)
	var out []obj
	known := map[string]bool{}
	for _, row := range rows {
		wrap := func(in map[string]any) (obj, error) {
			id, _ := in["custom_id"].(string)
			known[id] = true
			v, given := values[id]
			if !given {
				v, _ = in["value"].(string) // pre-filled value
			}
			req, hasReq := in["required"].(bool)
			if (req || !hasReq) && v == "" {
				return nil, fmt.Errorf("input %q is required", id)
			}
			n := utf8.RuneCountInString(v)
			if mn, ok := in["min_length"].(float64); ok && n > 0 && n < int(mn) {
				return nil, fmt.Errorf("input %q needs at least %d characters", id, int(mn))
			}
			mx := 4000
			if x, ok := in["max_length"].(float64); ok {
				mx = int(x)
			}
			if n > mx {
				return nil, fmt.Errorf("input %q allows at most %d characters", id, mx)
			}
			return obj{"type": 4, "id": intOf(in["id"]), "custom_id": id, "value": v}, nil
		}
		switch intOf(row["type"]) {
		case 1:
			children, _ := row["components"].([]any)
			var inner []obj
			for _, x := range children {
				w, err := wrap(x.(map[string]any))
				if err != nil {
					return "", errorf("%w", err)
				}
				inner = append(inner, w)
			}
			out = append(out, obj{"type": 1, "id": intOf(row["id"]), "components": inner})
		case 18:
			inner, _ := row["component"].(map[string]any)
			w, err := wrap(inner)
			if err != nil {
				return "", errorf("%w", err)
			}
			out = append(out, obj{"type": 18, "id": intOf(row["id"]), "component": w})
		}
	}
	for k := range values {
		if !known[k] {
			return "", errorf("modal %q has no input %q", md.CustomID, k)
		}
	}
	md.Open = false
	in := &interaction{Interaction: Interaction{Type: InteractionModalSubmit, User: u.ID, ChannelID: md.ChannelID,
		CustomID: md.CustomID, MessageID: md.MessageID}, data: obj{"custom_id": md.CustomID, "components": out}}
	if c := s.channels[md.ChannelID]; c != nil {
		in.GuildID = c.GuildID
	}
	if md.MessageID != "" {
		in.message = s.findMessageLocked(md.MessageID)
	}
	return s.startInteractionLocked(in), nil
}

// CloseModal dismisses an open modal without submitting (nothing is sent
// to the bot, as on Discord).
func (s *Server) CloseModal(userID, modalRef string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	md := s.findModalLocked(s.userIDLocked(userID), modalRef)
	if md == nil {
		return errorf("no open modal %q", modalRef)
	}
	md.Open = false
	s.notifyLocked()
	return nil
}

// userIDLocked is UserID for callers holding s.mu.
func (s *Server) userIDLocked(ref string) string {
	if u := s.resolveUserLocked(ref); u != nil {
		return u.ID
	}
	return ""
}

func (s *Server) findModalLocked(userID, ref string) *Modal {
	for i := len(s.modals) - 1; i >= 0; i-- {
		if m := s.modals[i]; m.User == userID && m.Open && (m.ID == ref || m.CustomID == ref || ref == "") {
			return m
		}
	}
	return nil
}
