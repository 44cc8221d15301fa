package discord

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"
	"github.com/runbookbot/runbookbot/bot"
)

// Discord's message limits the renderer keeps to.
const (
	maxContent     = 2000
	maxDescription = 4096
	maxEmbedTotal  = 6000
	maxFields      = 25
	maxFieldName   = 256
	maxFieldValue  = 1024
	maxRows        = 5
	maxRowButtons  = 5
	maxButtonLabel = 80
	maxCustomID    = 100
	maxModalTitle  = 45
	maxInputLabel  = 45
	maxPlaceholder = 100
	maxThreadName  = 100
)

// symbols are the emoji statuses are shown with.
var symbols = map[bot.Status]string{
	bot.StatusOK: "✅", bot.StatusFailed: "❌", bot.StatusRunning: "⏳", bot.StatusWaiting: "⌛",
	bot.StatusPending: "⚪", bot.StatusSkipped: "⏭️", bot.StatusWarning: "⚠️", bot.StatusRollback: "↩️",
	bot.StatusAborted: "🚫", bot.StatusPartial: "🔶", bot.StatusRefused: "⛔", bot.StatusInfo: "ℹ️",
	bot.StatusAlert: "🚨", bot.StatusResolved: "✅", bot.StatusStop: "🛑", bot.StatusTimeout: "⏰",
	bot.StatusEscalated: "📣", bot.StatusLock: "🔒", bot.StatusSearch: "🔍", bot.StatusQuestion: "❓",
	bot.StatusRunbook: "⚙️", bot.StatusVote: "☑️", bot.StatusQueued: "⌛",
}

// colors are the embed side bars, by the message's first meaningful status.
var colors = map[bot.Status]int{
	bot.StatusOK: 0x2ECC71, bot.StatusResolved: 0x2ECC71,
	bot.StatusFailed: 0xE74C3C, bot.StatusRefused: 0xE74C3C, bot.StatusAborted: 0xE74C3C, bot.StatusAlert: 0xE74C3C,
	bot.StatusEscalated: 0xE74C3C,
	bot.StatusRunning:   0xF1C40F, bot.StatusWaiting: 0xF1C40F, bot.StatusPending: 0xF1C40F, bot.StatusQueued: 0xF1C40F,
	bot.StatusLock: 0xE67E22, bot.StatusWarning: 0xE67E22, bot.StatusPartial: 0xE67E22,
	bot.StatusRollback: 0x9B59B6,
	bot.StatusTimeout:  0x95A5A6, bot.StatusStop: 0x95A5A6, bot.StatusSkipped: 0x95A5A6,
	bot.StatusInfo: 0x3498DB, bot.StatusSearch: 0x3498DB, bot.StatusQuestion: 0x3498DB, bot.StatusVote: 0x3498DB,
}

// keyBase marks a message with its key (the first block's id) in the
// embed's url, which Discord keeps but shows nowhere when the embed has no
// title; Find looks for it.
const keyBase = "https://runbookbot.invalid/key/"

func keyURL(key string) string { return keyBase + url.PathEscape(key) }

var escaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "~", `\~`, "`", "\\`", "|", `\|`,
	">", `\>`, "<", `\<`, "[", `\[`, "]", `\]`, "#", `\#`)

// snowflake matches Discord ids.
var snowflake = regexp.MustCompile(`^[0-9]{5,20}$`)

// userSnowflake returns the Discord user id of a user as the core spells it
// ("discord:123" or a bare snowflake), or "".
func userSnowflake(u string) string {
	u = strings.TrimPrefix(u, Name+":")
	if snowflake.MatchString(u) {
		return u
	}
	return ""
}

// Markdown renders rich text as Discord markdown.
func Markdown(r bot.Rich) string {
	var b strings.Builder
	for _, s := range r {
		switch s.Kind {
		case bot.SpanText:
			b.WriteString(escaper.Replace(s.Text))
		case bot.SpanBold:
			if s.Text != "" {
				b.WriteString("**" + escaper.Replace(s.Text) + "**")
			}
		case bot.SpanItalic:
			if s.Text != "" {
				b.WriteString("*" + escaper.Replace(s.Text) + "*")
			}
		case bot.SpanCode:
			if s.Text != "" {
				b.WriteString("`" + strings.ReplaceAll(s.Text, "`", "'") + "`")
			}
		case bot.SpanPre:
			b.WriteString("```\n" + strings.ReplaceAll(s.Text, "```", "'''") + "\n```")
		case bot.SpanMention:
			b.WriteString(mention(s.User))
		case bot.SpanGroup:
			b.WriteString(groupMention(s))
		case bot.SpanLink:
			text := escaper.Replace(s.Text)
			if text == "" {
				text = escaper.Replace(s.URL)
			}
			if u, err := url.Parse(s.URL); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
				b.WriteString("[" + text + "](" + strings.NewReplacer("(", "%28", ")", "%29", " ", "%20").Replace(s.URL) + ")")
			} else {
				b.WriteString(text)
			}
		case bot.SpanStatus:
			b.WriteString(symbols[s.Status])
		case bot.SpanTime:
			// Discord shows it in the reader's time zone.
			fmt.Fprintf(&b, "<t:%d:f>", s.Time.Unix())
		case bot.SpanBreak:
			b.WriteString("\n")
		}
	}
	return b.String()
}

// PlainText renders rich text where Discord shows no markdown (thread
// names, modal labels).
func PlainText(r bot.Rich) string {
	var b strings.Builder
	for _, s := range r {
		switch s.Kind {
		case bot.SpanStatus:
			b.WriteString(symbols[s.Status])
		case bot.SpanMention:
			b.WriteString("@" + strings.TrimPrefix(s.User, Name+":"))
		case bot.SpanGroup:
			b.WriteString("@" + s.Text)
		case bot.SpanTime:
			b.WriteString(s.Time.UTC().Format("2006-01-02 15:04 UTC"))
		case bot.SpanBreak:
			b.WriteString(" ")
		default:
			b.WriteString(s.Text)
		}
	}
	return b.String()
}

func mention(u string) string {
	if id := userSnowflake(u); id != "" {
		return "<@" + id + ">"
	}
	return escaper.Replace(u)
}

// groupMention mentions a group's Discord roles and users.
func groupMention(s bot.Span) string {
	if s.Group == nil {
		return "@" + escaper.Replace(s.Text)
	}
	var parts []string
	for _, u := range s.Group.Users {
		if id := userSnowflake(u); id != "" {
			parts = append(parts, "<@"+id+">")
		}
	}
	for _, r := range s.Group.DiscordRoles {
		if snowflake.MatchString(r) {
			parts = append(parts, "<@&"+r+">")
		}
	}
	if len(parts) == 0 {
		return "@" + escaper.Replace(s.Group.Name)
	}
	return strings.Join(parts, " ")
}

// clip shortens s to n runes, marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Rendered is a neutral message as Discord's message fields.
type Rendered struct {
	Content    string
	Embeds     []*discordgo.MessageEmbed
	Components []discordgo.MessageComponent
	Mentions   *discordgo.MessageAllowedMentions
}

// pings reports whether a message mentions groups (an escalation asking
// people to act), which only message content can notify.
func pings(m bot.Message) bool {
	for _, b := range m.Blocks {
		for _, s := range b.Text {
			if s.Kind == bot.SpanGroup {
				return true
			}
		}
	}
	return false
}

// plain reports whether a message is just text: it goes in the content.
func plain(m bot.Message) bool {
	for _, b := range m.Blocks {
		if b.Kind == bot.KindHeader || b.Kind == bot.KindActions || len(b.Fields) > 0 {
			return false
		}
	}
	return len(m.Blocks) == 0 || m.Blocks[0].ID == "" || pings(m)
}

// Render turns a neutral message into Discord's: plain answers and
// notices as content (mentions notify), everything the view keeps up to
// date as one embed (status colour, header, text, fields, and the key the
// bot finds it by) with its buttons as components.
func Render(m bot.Message) Rendered {
	noPing := &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}
	if plain(m) {
		var parts []string
		for _, b := range m.Blocks {
			if b.Kind == bot.KindDivider {
				continue
			}
			text := Markdown(b.Text)
			if b.Kind == bot.KindContext {
				text = subtext(text)
			}
			parts = append(parts, text)
		}
		if len(m.Blocks) == 0 {
			parts = append(parts, Markdown(m.Summary))
		}
		content := strings.Join(parts, "\n")
		if utf8.RuneCountInString(content) <= maxContent {
			if content == "" {
				content = "\u200b"
			}
			r := Rendered{Content: content, Mentions: noPing}
			if pings(m) {
				r.Mentions = &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{discordgo.AllowedMentionTypeUsers, discordgo.AllowedMentionTypeRoles}}
			}
			return r
		}
	}
	return Rendered{Embeds: []*discordgo.MessageEmbed{embed(m)}, Components: components(m), Mentions: noPing}
}

// subtext renders a line as Discord's small grey text.
func subtext(s string) string {
	lines := strings.Split(s, "\n")
	code := false
	for i, l := range lines {
		if n := strings.Count(l, "```"); n > 0 {
			if n%2 == 1 {
				code = !code
			}
			continue
		}
		if !code && strings.TrimSpace(l) != "" {
			lines[i] = "-# " + l
		}
	}
	return strings.Join(lines, "\n")
}

// embed renders a message's text blocks as one embed.
func embed(m bot.Message) *discordgo.MessageEmbed {
	e := &discordgo.MessageEmbed{Type: discordgo.EmbedTypeRich, Color: color(m)}
	if len(m.Blocks) > 0 && m.Blocks[0].ID != "" {
		e.URL = keyURL(m.Blocks[0].ID)
	}
	var desc []string
	for _, b := range m.Blocks {
		switch b.Kind {
		case bot.KindHeader:
			desc = append(desc, "### "+Markdown(b.Text))
		case bot.KindSection:
			if len(b.Text) > 0 {
				desc = append(desc, Markdown(b.Text))
			}
			for _, f := range b.Fields {
				if len(e.Fields) == maxFields {
					break
				}
				name := clip(strings.TrimSpace(f.Label), maxFieldName)
				if name == "" {
					name = "\u200b"
				}
				value := clip(strings.TrimSpace(Markdown(f.Value)), maxFieldValue)
				if value == "" {
					value = "\u200b"
				}
				e.Fields = append(e.Fields, &discordgo.MessageEmbedField{Name: name, Value: value,
					Inline: utf8.RuneCountInString(value) <= 60})
			}
		case bot.KindContext:
			desc = append(desc, subtext(Markdown(b.Text)))
		}
	}
	if len(desc) == 0 {
		desc = append(desc, Markdown(m.Summary))
	}
	// The description goes first; fields take what is left of the 6000
	// characters an embed may hold.
	e.Description = clip(strings.Join(desc, "\n"), maxDescription)
	budget := maxEmbedTotal - utf8.RuneCountInString(e.Description)
	kept := e.Fields[:0]
	for _, f := range e.Fields {
		n := utf8.RuneCountInString(f.Name) + utf8.RuneCountInString(f.Value)
		if n > budget {
			break
		}
		budget -= n
		kept = append(kept, f)
	}
	e.Fields = kept
	return e
}

// color is the embed colour of the first status that says how things
// stand (the runbook symbol says nothing).
func color(m bot.Message) int {
	for _, b := range m.Blocks {
		for _, s := range b.Text {
			if s.Kind == bot.SpanStatus && s.Status != bot.StatusRunbook {
				return colors[s.Status]
			}
		}
	}
	return colors[bot.StatusInfo]
}

// components renders actions blocks as rows of buttons.
func components(m bot.Message) []discordgo.MessageComponent {
	var rows []discordgo.MessageComponent
	for _, b := range m.Blocks {
		if b.Kind != bot.KindActions {
			continue
		}
		var row []discordgo.MessageComponent
		flush := func() {
			if len(row) > 0 && len(rows) < maxRows {
				rows = append(rows, discordgo.ActionsRow{Components: row})
			}
			row = nil
		}
		for _, btn := range b.Buttons {
			if len(row) == maxRowButtons {
				flush()
			}
			style := discordgo.SecondaryButton
			switch btn.Style {
			case bot.StylePrimary:
				style = discordgo.SuccessButton
			case bot.StyleDanger:
				style = discordgo.DangerButton
			}
			label := clip(strings.TrimSpace(btn.Label), maxButtonLabel)
			if label == "" {
				label = "…"
			}
			row = append(row, discordgo.Button{Label: label, Style: style, CustomID: EncodeButton(btn.ID, btn.Command)})
		}
		flush()
	}
	return rows
}

// A button's custom_id carries what the core needs back: the button's id
// and its command line, "<id>\x1f<line>" (Discord allows 100 characters).
// UUIDs in the line are shortened to 22 base64 characters. A pair that is
// still too long is kept in memory under a hash ("#<hash>"): such buttons
// (long alert-offer lines) do not survive a restart, and a click on one
// then is refused as a button the bot no longer knows.
const idSep = "\x1f"

var uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// uuidMark starts a shortened UUID in a custom_id (it cannot start a
// word of a command line).
const uuidMark = "~"

func shrink(line string) string {
	return uuidRe.ReplaceAllStringFunc(line, func(u string) string {
		raw, err := hex.DecodeString(strings.ReplaceAll(u, "-", ""))
		if err != nil {
			return u
		}
		return uuidMark + base64.RawURLEncoding.EncodeToString(raw)
	})
}

var shortRe = regexp.MustCompile(uuidMark + `[A-Za-z0-9_-]{22}`)

func grow(s string) string {
	return shortRe.ReplaceAllStringFunc(s, func(m string) string {
		raw, err := base64.RawURLEncoding.DecodeString(m[1:])
		if err != nil || len(raw) != 16 {
			return m
		}
		h := fmt.Sprintf("%x", raw)
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	})
}

// longIDs keeps pairs too long for a custom_id, by hash.
var longIDs = struct {
	sync.Mutex
	m map[string][2]string
}{m: map[string][2]string{}}

func storeLong(id, line string) string {
	sum := sha256.Sum256([]byte(id + idSep + line))
	h := "#" + base64.RawURLEncoding.EncodeToString(sum[:18])
	longIDs.Lock()
	longIDs.m[h] = [2]string{id, line}
	longIDs.Unlock()
	return h
}

// EncodeButton packs a button's id and command line into a custom_id.
func EncodeButton(id, line string) string {
	s := shrink(id) + idSep + shrink(line)
	if utf8.RuneCountInString(s) <= maxCustomID && !strings.HasPrefix(s, "#") {
		return s
	}
	return storeLong(id, line)
}

// DecodeButton unpacks a custom_id; ok is false for ids the bot did not
// make (or long ones it no longer remembers).
func DecodeButton(customID string) (id, line string, ok bool) {
	if strings.HasPrefix(customID, "#") {
		longIDs.Lock()
		p, found := longIDs.m[customID]
		longIDs.Unlock()
		return p[0], p[1], found
	}
	id, line, ok = strings.Cut(customID, idSep)
	if !ok {
		return "", "", false
	}
	return grow(id), grow(line), true
}

// modalView renders a form. Discord modals hold only text inputs, so the
// form's explanation becomes the first input's placeholder; the form's id
// and command line travel in its custom_id like a button's.
func modalView(m bot.Modal) *discordgo.InteractionResponseData {
	var rows []discordgo.MessageComponent
	for i, in := range m.Inputs {
		if i == 5 {
			break
		}
		style := discordgo.TextInputShort
		if in.Multiline {
			style = discordgo.TextInputParagraph
		}
		ph := in.Placeholder
		if i == 0 && ph == "" && len(m.Text) > 0 {
			ph = PlainText(m.Text)
		}
		ti := discordgo.TextInput{CustomID: in.ID, Label: clip(in.Label, maxInputLabel), Style: style,
			Placeholder: clip(ph, maxPlaceholder), Required: !in.Optional, MaxLength: 1000}
		if !in.Optional {
			ti.MinLength = 1
		}
		rows = append(rows, discordgo.ActionsRow{Components: []discordgo.MessageComponent{ti}})
	}
	title := strings.TrimSpace(m.Title)
	if title == "" {
		title = "runbookbot"
	}
	return &discordgo.InteractionResponseData{CustomID: EncodeButton(m.ID, m.Command), Title: clip(title, maxModalTitle), Components: rows}
}

// threadName names a thread after the message it starts from.
func threadName(m bot.Message) string {
	name := PlainText(m.Summary)
	if name == "" {
		for _, b := range m.Blocks {
			if name = PlainText(b.Text); name != "" {
				break
			}
		}
	}
	name = strings.TrimSpace(strings.ReplaceAll(name, "\n", " "))
	if name == "" {
		name = "runbook"
	}
	return clip(name, maxThreadName)
}
