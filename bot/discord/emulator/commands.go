package emulator

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Application command option types.
const (
	OptionSubCommand      = 1
	OptionSubCommandGroup = 2
	OptionString          = 3
	OptionInteger         = 4
	OptionBoolean         = 5
	OptionUser            = 6
	OptionChannel         = 7
	OptionRole            = 8
	OptionMentionable     = 9
	OptionNumber          = 10
	OptionAttachment      = 11
)

// CommandOption is one option of a registered command, as the bot sent it.
type CommandOption struct {
	Type         int             `json:"type"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	Required     bool            `json:"required,omitempty"`
	Autocomplete bool            `json:"autocomplete,omitempty"`
	Choices      []CommandChoice `json:"choices,omitempty"`
	Options      []CommandOption `json:"options,omitempty"`
	MinValue     *float64        `json:"min_value,omitempty"`
	MaxValue     *float64        `json:"max_value,omitempty"`
	MinLength    *int            `json:"min_length,omitempty"`
	MaxLength    *int            `json:"max_length,omitempty"`
	ChannelTypes []int           `json:"channel_types,omitempty"`
}

// CommandChoice is a fixed choice of a string, integer or number option.
type CommandChoice struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// Command is a registered application command.
type Command struct {
	ID          string          `json:"id"`
	GuildID     string          `json:"guild_id,omitempty"` // "" = global
	Type        int             `json:"type"`               // 1 chat input, 2 user, 3 message
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Options     []CommandOption `json:"options,omitempty"`
	Version     string          `json:"version"`
}

type command struct {
	Command
	raw obj // as the bot sent it, for echoing back
}

var commandNameRE = regexp.MustCompile(`^[-_'\p{L}\p{N}\p{Devanagari}\p{Thai}]{1,32}$`)

// checkCommand validates a command like Discord; path prefixes error keys
// (e.g. "0." in a bulk overwrite).
func checkCommand(f *formErrors, path string, c *Command) {
	if c.Type == 0 {
		c.Type = 1
	}
	if c.Type < 1 || c.Type > 4 {
		f.add(path+"type", "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.")
	}
	if c.Type == 1 {
		if !commandNameRE.MatchString(c.Name) || strings.ToLower(c.Name) != c.Name {
			f.add(path+"name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
		}
		f.between(path+"description", c.Description, 1, 100)
	} else {
		f.between(path+"name", c.Name, 1, 32)
		if c.Description != "" {
			f.add(path+"description", "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION", "Context menu commands cannot have description")
		}
		if len(c.Options) > 0 {
			f.add(path+"options", "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED", "Context menu commands cannot have options")
		}
	}
	checkOptions(f, path+"options", c.Options, 0)
}

func checkOptions(f *formErrors, path string, opts []CommandOption, depth int) {
	if len(opts) > 25 {
		f.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
	}
	names := map[string]bool{}
	subs, optional := 0, false
	for i, o := range opts {
		p := path + "." + strconv.Itoa(i) + "."
		if o.Type < 1 || o.Type > 11 {
			f.add(p+"type", "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.")
		}
		if !commandNameRE.MatchString(o.Name) || strings.ToLower(o.Name) != o.Name {
			f.add(p+"name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
		}
		if names[o.Name] {
			f.add(p+"name", "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
		}
		names[o.Name] = true
		f.between(p+"description", o.Description, 1, 100)
		if len(o.Choices) > 25 {
			f.add(p+"choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
		}
		if o.Autocomplete && len(o.Choices) > 0 {
			f.add(p+"autocomplete", "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID", "Autocomplete cannot be set with choices")
		}
		switch o.Type {
		case OptionSubCommand:
			subs++
			if depth > 1 {
				f.add(p+"type", "APPLICATION_COMMAND_SUBCOMMAND_NESTING", "Sub-command nesting is too deep")
			}
			for j, x := range o.Options {
				if x.Type == OptionSubCommand || x.Type == OptionSubCommandGroup {
					f.add(p+"options."+strconv.Itoa(j)+".type", "APPLICATION_COMMAND_SUBCOMMAND_NESTING", "Sub-commands cannot contain sub-commands")
				}
			}
			checkOptions(f, p+"options", o.Options, depth+1)
		case OptionSubCommandGroup:
			subs++
			if depth > 0 {
				f.add(p+"type", "APPLICATION_COMMAND_SUBCOMMAND_NESTING", "Sub-command groups must be at the top level")
			}
			for j, x := range o.Options {
				if x.Type != OptionSubCommand {
					f.add(p+"options."+strconv.Itoa(j)+".type", "APPLICATION_COMMAND_SUBCOMMAND_GROUP_CHILDREN", "Sub-command groups may only contain sub-commands")
				}
			}
			checkOptions(f, p+"options", o.Options, depth+1)
		default:
			if len(o.Options) > 0 {
				f.add(p+"options", "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED", "Only sub-commands may have options")
			}
			if o.Required && optional {
				f.add(p+"required", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", "Required options must be placed before non-required options")
			}
			optional = optional || !o.Required
		}
	}
	if subs > 0 && subs != len(opts) {
		f.add(path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-command and sub-command group option types are mutually exclusive to all other types")
	}
}

// commandScope checks {application_id} and {guild_id} and returns the
// guild ID ("" for global).
func (c *call) commandScopeLocked() (string, bool) {
	if c.p("application_id") != c.s.opts.ApplicationID {
		c.fail(errMissingAccess())
		return "", false
	}
	g := c.p("guild_id")
	if g != "" && c.s.guilds[g] == nil {
		c.fail(errUnknownGuild())
		return "", false
	}
	return g, true
}

func (s *Server) wireCommandLocked(cmd *command) obj {
	o := obj{}
	for k, v := range cmd.raw {
		o[k] = v
	}
	o["id"], o["application_id"], o["version"], o["type"] = cmd.ID, s.opts.ApplicationID, cmd.Version, cmd.Type
	o["name"], o["description"] = cmd.Name, cmd.Description
	o["default_member_permissions"], o["nsfw"] = nil, false
	if cmd.GuildID != "" {
		o["guild_id"] = cmd.GuildID
	} else {
		o["dm_permission"] = true
		o["integration_types"], o["contexts"] = []int{0}, nil
	}
	if len(cmd.Options) > 0 {
		o["options"] = cmd.Options
	} else {
		delete(o, "options")
	}
	return o
}

// decodeCommand parses one command object, keeping the raw fields.
func decodeCommand(raw json.RawMessage) (*command, error) {
	cmd := &command{}
	if err := json.Unmarshal(raw, &cmd.Command); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &cmd.raw); err != nil {
		return nil, err
	}
	for k, v := range cmd.raw {
		if v == nil {
			delete(cmd.raw, k)
		}
	}
	return cmd, nil
}

func (s *Server) scopeCommandsLocked(guildID string) []*command {
	var out []*command
	for _, id := range s.commandOrder {
		if c := s.commands[id]; c.GuildID == guildID {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) listCommands(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := c.commandScopeLocked()
	if !ok {
		return
	}
	out := []obj{}
	for _, cmd := range s.scopeCommandsLocked(g) {
		out = append(out, s.wireCommandLocked(cmd))
	}
	c.ok(http.StatusOK, out)
}

// overwriteCommands serves the bulk overwrite (PUT): commands with a known
// name keep their ID, others are created, missing ones are deleted.
func (s *Server) overwriteCommands(c *call) {
	var raws []json.RawMessage
	if err := json.Unmarshal(c.body, &raws); err != nil {
		c.fail(errBadJSON())
		return
	}
	var f formErrors
	if len(raws) > 100 {
		f.add("", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
	}
	var cmds []*command
	seen := map[string]bool{}
	for i, raw := range raws {
		cmd, err := decodeCommand(raw)
		if err != nil {
			c.fail(errBadJSON())
			return
		}
		checkCommand(&f, strconv.Itoa(i)+".", &cmd.Command)
		key := strconv.Itoa(cmd.Type) + "/" + cmd.Name
		if seen[key] {
			f.add(strconv.Itoa(i)+".name", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
		}
		seen[key] = true
		cmds = append(cmds, cmd)
	}
	if e := f.err(); e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := c.commandScopeLocked()
	if !ok {
		return
	}
	old := map[string]*command{}
	for _, cmd := range s.scopeCommandsLocked(g) {
		old[strconv.Itoa(cmd.Type)+"/"+cmd.Name] = cmd
		s.removeCommandLocked(cmd.ID)
	}
	out := []obj{}
	for _, cmd := range cmds {
		cmd.GuildID = g
		if prev := old[strconv.Itoa(cmd.Type)+"/"+cmd.Name]; prev != nil {
			cmd.ID = prev.ID
		}
		s.storeCommandLocked(cmd)
		out = append(out, s.wireCommandLocked(cmd))
	}
	s.notifyLocked()
	c.ok(http.StatusOK, out)
}

func (s *Server) storeCommandLocked(cmd *command) {
	if cmd.ID == "" {
		cmd.ID = s.snowflakeLocked()
	}
	cmd.Version = s.snowflakeLocked()
	if _, ok := s.commands[cmd.ID]; !ok {
		s.commandOrder = append(s.commandOrder, cmd.ID)
	}
	s.commands[cmd.ID] = cmd
}

func (s *Server) removeCommandLocked(id string) {
	delete(s.commands, id)
	for i, x := range s.commandOrder {
		if x == id {
			s.commandOrder = append(s.commandOrder[:i:i], s.commandOrder[i+1:]...)
			break
		}
	}
}

// createCommand serves POST …/commands: creating a command with an
// existing name updates it (200), a new one answers 201.
func (s *Server) createCommand(c *call) {
	cmd, err := decodeCommand(c.body)
	if err != nil {
		c.fail(errBadJSON())
		return
	}
	var f formErrors
	checkCommand(&f, "", &cmd.Command)
	if e := f.err(); e != nil {
		c.fail(e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := c.commandScopeLocked()
	if !ok {
		return
	}
	cmd.GuildID = g
	status := http.StatusCreated
	for _, prev := range s.scopeCommandsLocked(g) {
		if prev.Name == cmd.Name && prev.Type == cmd.Type {
			cmd.ID, status = prev.ID, http.StatusOK
		}
	}
	s.storeCommandLocked(cmd)
	s.notifyLocked()
	c.ok(status, s.wireCommandLocked(cmd))
}

func (c *call) commandLocked() *command {
	g, ok := c.commandScopeLocked()
	if !ok {
		return nil
	}
	cmd := c.s.commands[c.p("command_id")]
	if cmd == nil || cmd.GuildID != g {
		c.fail(errUnknownCommand())
		return nil
	}
	return cmd
}

func (s *Server) getCommand(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd := c.commandLocked(); cmd != nil {
		c.ok(http.StatusOK, s.wireCommandLocked(cmd))
	}
}

func (s *Server) editCommand(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := c.commandLocked()
	if cmd == nil {
		return
	}
	merged := obj{}
	for k, v := range cmd.raw {
		merged[k] = v
	}
	var patch obj
	if err := json.Unmarshal(c.body, &patch); err != nil {
		c.fail(errBadJSON())
		return
	}
	for k, v := range patch {
		merged[k] = v
	}
	merged["type"] = cmd.Type
	next, err := decodeCommand(mustJSON(merged))
	if err != nil {
		c.fail(errBadJSON())
		return
	}
	var f formErrors
	checkCommand(&f, "", &next.Command)
	if e := f.err(); e != nil {
		c.fail(e)
		return
	}
	next.ID, next.GuildID = cmd.ID, cmd.GuildID
	s.storeCommandLocked(next)
	s.notifyLocked()
	c.ok(http.StatusOK, s.wireCommandLocked(next))
}

func (s *Server) deleteCommand(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd := c.commandLocked(); cmd != nil {
		s.removeCommandLocked(cmd.ID)
		s.notifyLocked()
		c.ok(http.StatusNoContent, nil)
	}
}

// Commands returns the registered commands of a guild ("" = global).
func (s *Server) Commands(guildID string) []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Command
	for _, c := range s.scopeCommandsLocked(guildID) {
		out = append(out, c.Command)
	}
	return out
}

// findCommandLocked finds the chat-input command name usable in guildID:
// a guild command first, then a global one.
func (s *Server) findCommandLocked(guildID, name string) *command {
	var global *command
	for _, id := range s.commandOrder {
		c := s.commands[id]
		if c.Name != name || c.Type != 1 {
			continue
		}
		if c.GuildID == guildID && guildID != "" {
			return c
		}
		if c.GuildID == "" {
			global = c
		}
	}
	return global
}
