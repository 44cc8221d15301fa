package discord

import (
	"sort"
	"strconv"
	"strings"

	"github.com/bwmarrin/discordgo"
)

// CommandName is the application command the bot registers.
const CommandName = "runbook"

// RunbookHint is what autocomplete offers of a runbook.
type RunbookHint struct {
	Name        string
	Description string
	Params      []string
}

func strOpt(name, desc string, required, auto bool) *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: name, Description: desc,
		Required: required, Autocomplete: auto}
}

func sub(name, desc string, opts ...*discordgo.ApplicationCommandOption) *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionSubCommand, Name: name, Description: desc, Options: opts}
}

// Commands is /runbook as Discord knows it: one sub-command per verb of
// the grammar, whose options become the same command line a Slack user
// types, so both go through one parser.
func Commands() []*discordgo.ApplicationCommand {
	one := 1.0
	fifty := 50.0
	var outcomes []*discordgo.ApplicationCommandOptionChoice
	for _, o := range []string{"success", "failure", "partial", "rollback", "aborted"} {
		outcomes = append(outcomes, &discordgo.ApplicationCommandOptionChoice{Name: o, Value: o})
	}
	return []*discordgo.ApplicationCommand{{
		Name: CommandName, Description: "Run operational runbooks",
		Options: []*discordgo.ApplicationCommandOption{
			sub("run", "Start a runbook", strOpt("name", "Runbook", true, true),
				strOpt("params", "Parameters: key=value ... (quote values with spaces)", false, true)),
			sub("dry-run", "Show what a runbook would do", strOpt("name", "Runbook", true, true),
				strOpt("params", "Parameters: key=value ...", false, true)),
			sub("list", "List the runbooks"),
			sub("describe", "A runbook's parameters and steps", strOpt("name", "Runbook", true, true)),
			sub("status", "One execution (an id or a unique prefix), or the active ones", strOpt("id", "Execution id", false, false)),
			sub("cancel", "Stop an execution", strOpt("id", "Execution id", true, false)),
			sub("history", "Past executions",
				strOpt("runbook", "Only this runbook", false, true),
				&discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: "outcome", Description: "Only this outcome", Choices: outcomes},
				strOpt("since", "How far back, e.g. 24h or 7d", false, false),
				&discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionInteger, Name: "limit", Description: "How many", MinValue: &one, MaxValue: fifty}),
			sub("approve", "Approve a step", strOpt("id", "Approval id", true, false)),
			sub("reject", "Reject a step", strOpt("id", "Approval id", true, false), strOpt("reason", "Why", true, false)),
			sub("bypass", "Emergency bypass of an approval", strOpt("id", "Approval id", true, false),
				strOpt("justification", "Why this cannot wait", true, false)),
			sub("schedules", "Scheduled runbooks and their next run; or pause or resume one",
				&discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: "action", Description: "Pause or resume a schedule (needs schedules:manage)",
					Choices: []*discordgo.ApplicationCommandOptionChoice{{Name: "pause", Value: "pause"}, {Name: "resume", Value: "resume"}}},
				strOpt("name", "Runbook whose schedule to pause or resume", false, true)),
			sub("help", "How to use /runbook"),
		},
	}}
}

// option returns a sub-command option's value as text.
func option(opts []*discordgo.ApplicationCommandInteractionDataOption, name string) string {
	for _, o := range opts {
		if o.Name != name || o.Value == nil {
			continue
		}
		switch o.Type {
		case discordgo.ApplicationCommandOptionInteger:
			return strconv.FormatInt(o.IntValue(), 10)
		case discordgo.ApplicationCommandOptionString:
			return strings.TrimSpace(o.StringValue())
		}
	}
	return ""
}

// quote keeps a value one word of a command line.
func quote(v string) string {
	if v == "" || !strings.ContainsAny(v, " \t\"") {
		return v
	}
	return strconv.Quote(v)
}

// CommandLine turns a /runbook interaction into the grammar's command line
// ("run example-echo service=checkout").
func CommandLine(data discordgo.ApplicationCommandInteractionData) string {
	if len(data.Options) == 0 || data.Options[0].Type != discordgo.ApplicationCommandOptionSubCommand {
		return "help"
	}
	s := data.Options[0]
	verb, opts := s.Name, s.Options
	words := []string{verb}
	add := func(w ...string) {
		for _, x := range w {
			if x != "" {
				words = append(words, x)
			}
		}
	}
	switch verb {
	case "run", "dry-run":
		add(quote(option(opts, "name")), option(opts, "params"))
	case "describe":
		add(quote(option(opts, "name")))
	case "status", "cancel", "approve":
		add(quote(option(opts, "id")))
	case "reject":
		add(quote(option(opts, "id")), option(opts, "reason"))
	case "bypass":
		add(quote(option(opts, "id")), option(opts, "justification"))
	case "schedules":
		add(option(opts, "action"), quote(option(opts, "name")))
	case "history":
		add(quote(option(opts, "runbook")))
		for _, f := range []string{"outcome", "since", "limit"} {
			if v := option(opts, f); v != "" {
				add("--"+f, quote(v))
			}
		}
	}
	return strings.Join(words, " ")
}

// suggest answers autocomplete: runbook names for name/runbook, and for
// params the typed text completed with each parameter not given yet.
func suggest(data discordgo.ApplicationCommandInteractionData, hints []RunbookHint) []*discordgo.ApplicationCommandOptionChoice {
	if len(data.Options) == 0 {
		return nil
	}
	opts := data.Options[0].Options
	var focused *discordgo.ApplicationCommandInteractionDataOption
	for _, o := range opts {
		if o.Focused {
			focused = o
		}
	}
	if focused == nil {
		return nil
	}
	typed := ""
	if s, ok := focused.Value.(string); ok {
		typed = s
	}
	var out []*discordgo.ApplicationCommandOptionChoice
	addChoice := func(name, value string) {
		if len(out) < 25 && value != "" && len(value) <= 100 {
			out = append(out, &discordgo.ApplicationCommandOptionChoice{Name: clip(name, 100), Value: value})
		}
	}
	switch focused.Name {
	case "name", "runbook":
		sort.Slice(hints, func(i, j int) bool { return hints[i].Name < hints[j].Name })
		low := strings.ToLower(typed)
		for _, h := range hints {
			if strings.Contains(strings.ToLower(h.Name), low) {
				label := h.Name
				if h.Description != "" {
					label += " — " + h.Description
				}
				addChoice(label, h.Name)
			}
		}
	case "params":
		name := option(opts, "name")
		for _, h := range hints {
			if h.Name != name {
				continue
			}
			given := map[string]bool{}
			fields := strings.Fields(typed)
			prefix := typed
			partial := ""
			if len(fields) > 0 && !strings.HasSuffix(typed, " ") && !strings.Contains(fields[len(fields)-1], "=") {
				partial = fields[len(fields)-1]
				prefix = strings.TrimSuffix(typed, partial)
			}
			for _, f := range fields {
				if k, _, ok := strings.Cut(f, "="); ok {
					given[k] = true
				}
			}
			if prefix != "" && !strings.HasSuffix(prefix, " ") {
				prefix += " "
			}
			for _, p := range h.Params {
				if !given[p] && strings.HasPrefix(p, partial) {
					addChoice(prefix+p+"=", prefix+p+"=")
				}
			}
		}
		if len(out) == 0 && typed != "" {
			addChoice(typed, typed)
		}
	}
	return out
}
