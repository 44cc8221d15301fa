package emulator

import (
	"html"
	"regexp"
	"strconv"
	"strings"
)

// directory resolves the ids a message mentions to what Slack shows: a
// user's name, a channel's name, a user group's handle. Each returns ""
// for an unknown id.
type directory struct {
	user, channel, group func(id string) string
}

// directoryLocked resolves against the emulator's state. Caller holds s.mu
// for as long as the directory is used.
func (s *Server) directoryLocked() directory {
	return directory{
		user: func(id string) string {
			if u := s.users[id]; u != nil {
				return u.Name
			}
			return ""
		},
		channel: func(id string) string {
			if c := s.channels[id]; c != nil {
				return c.Name
			}
			return ""
		},
		group: func(id string) string {
			if g := s.groups[id]; g != nil {
				return g.Handle
			}
			return ""
		},
	}
}

// Placeholders stand in for finished HTML (links, mentions, emoji) while
// the surrounding text is styled; they cannot occur in input (renderMrkdwn
// strips them) and are neither spaces nor punctuation, so they never open
// or close a style.
const (
	phOpen  = '\x00'
	phClose = '\x01'
)

type placeholders []string

func (p *placeholders) add(htmlText string) string {
	*p = append(*p, htmlText)
	return string(phOpen) + strconv.Itoa(len(*p)-1) + string(phClose)
}

var phRE = regexp.MustCompile("\x00([0-9]+)\x01")

func (p placeholders) expand(s string) string {
	return phRE.ReplaceAllStringFunc(s, func(m string) string {
		i, _ := strconv.Atoi(m[1 : len(m)-1])
		return p[i]
	})
}

// renderMrkdwn renders Slack mrkdwn as the Slack client shows it, as HTML:
// *bold*, _italic_, ~strike~, `code`, ```preformatted```, > quotes,
// <url|text> links, <@U…> / <#C…> / <!subteam^S…> / <!here> mentions by
// name, :emoji: shortcodes, and the &amp; &lt; &gt; entities Slack
// requires for literal & < >. Everything else is escaped text.
func renderMrkdwn(text string, dir directory) string {
	text = strings.Map(func(r rune) rune {
		if r == phOpen || r == phClose {
			return -1
		}
		return r
	}, text)
	var out strings.Builder
	// ``` fences: preformatted text between pairs; an odd last fence is text.
	parts := strings.Split(text, "```")
	for i := 0; i < len(parts); i++ {
		if i%2 == 1 && i < len(parts)-1 {
			pre := strings.TrimPrefix(parts[i], "\n")
			out.WriteString(`<pre class="code">` + renderCode(pre, dir) + "</pre>")
			continue
		}
		seg := parts[i]
		if i%2 == 1 { // unmatched fence
			seg = "```" + seg
		}
		out.WriteString(renderInline(seg, dir))
	}
	return out.String()
}

// renderInline renders text outside ``` fences: `code` spans, then the
// rest.
func renderInline(s string, dir directory) string {
	var out strings.Builder
	for {
		i := strings.IndexByte(s, '`')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], '`')
		if j <= 0 || strings.Contains(s[i+1:i+1+j], "\n") {
			// No closing backtick on this line (or an empty ``): literal.
			out.WriteString(renderText(s[:i+1], dir))
			s = s[i+1:]
			continue
		}
		out.WriteString(renderText(s[:i], dir))
		out.WriteString("<code>" + renderCode(s[i+1:i+1+j], dir) + "</code>")
		s = s[i+2+j:]
	}
	out.WriteString(renderText(s, dir))
	return out.String()
}

var controlRE = regexp.MustCompile(`<([^<>\n]+)>`)

// renderCode renders the inside of `code` or ``` fences: entities and
// control sequences are resolved, but nothing is styled and emoji
// shortcodes stay as typed.
func renderCode(s string, dir directory) string {
	var ph placeholders
	s = controlRE.ReplaceAllStringFunc(s, func(m string) string {
		return ph.add(renderControl(m[1:len(m)-1], dir))
	})
	s = html.EscapeString(decodeEntities(s))
	return ph.expand(strings.ReplaceAll(s, "\n", "<br>"))
}

var emojiRE = regexp.MustCompile(`:([a-z0-9_+'-]+):(?::skin-tone-[2-6]:)?`)

// renderText renders plain mrkdwn text: control sequences, entities,
// emoji, quotes and styles.
func renderText(s string, dir directory) string {
	if s == "" {
		return ""
	}
	var ph placeholders
	s = controlRE.ReplaceAllStringFunc(s, func(m string) string {
		return ph.add(renderControl(m[1:len(m)-1], dir))
	})
	s = html.EscapeString(decodeEntities(s))
	s = emojiRE.ReplaceAllStringFunc(s, func(m string) string {
		name := emojiRE.FindStringSubmatch(m)[1]
		if e, ok := emoji[name]; ok {
			return ph.add(`<span class="emoji" title=":` + name + `:">` + e + "</span>")
		}
		return m
	})
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		quote := false
		if rest, ok := strings.CutPrefix(line, "&gt;"); ok {
			quote, line = true, strings.TrimPrefix(rest, " ")
		}
		line = style(line, '~', "<s>", "</s>")
		line = style(line, '*', "<b>", "</b>")
		line = style(line, '_', "<i>", "</i>")
		if quote {
			line = `<span class="quote">` + line + "</span>"
		}
		lines[i] = line
	}
	return ph.expand(strings.Join(lines, "<br>"))
}

// style wraps marker-delimited runs of one line: the opening marker starts
// the line or follows a space or punctuation and is followed by a
// non-space; the closing marker follows a non-space and ends the line or
// precedes a space or punctuation. So snake_case_names and 2*3*4 stay as
// they are, as in Slack.
func style(s string, marker byte, open, close string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != marker || !boundary(s, i-1) || i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == marker {
			out.WriteByte(c)
			continue
		}
		end := -1
		for j := i + 2; j < len(s); j++ {
			if s[j] == marker && s[j-1] != ' ' && boundary(s, j+1) {
				end = j
				break
			}
		}
		if end < 0 {
			out.WriteByte(c)
			continue
		}
		out.WriteString(open + s[i+1:end] + close)
		i = end
	}
	return out.String()
}

// boundary reports whether s[i] may sit next to a style marker: the edge
// of the line, a space, or punctuation (HTML tags and entities included).
func boundary(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return true
	}
	return strings.IndexByte(" \t.,;:!?()[]{}<>\"'*_~-/&", s[i]) >= 0
}

// decodeEntities undoes the three escapes Slack asks senders to use.
func decodeEntities(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// renderControl renders the inside of a <…> control sequence: a mention
// of a user, channel, user group or special group, a date, or a link.
func renderControl(body string, dir directory) string {
	target, label, hasLabel := strings.Cut(body, "|")
	label = decodeEntities(label)
	mention := func(prefix, name string) string {
		return `<span class="mention">` + html.EscapeString(prefix+name) + "</span>"
	}
	pick := func(resolved, id string) string {
		switch {
		case resolved != "":
			return resolved
		case hasLabel && label != "":
			return strings.TrimLeft(label, "@#")
		}
		return id
	}
	switch {
	case strings.HasPrefix(target, "@"):
		id := target[1:]
		return mention("@", pick(dir.user(id), id))
	case strings.HasPrefix(target, "#"):
		id := target[1:]
		return mention("#", pick(dir.channel(id), id))
	case strings.HasPrefix(target, "!subteam^"):
		id := strings.TrimPrefix(target, "!subteam^")
		return mention("@", pick(dir.group(id), id))
	case target == "!here" || target == "!channel" || target == "!everyone":
		return mention("@", target[1:])
	case strings.HasPrefix(target, "!date^"):
		return html.EscapeString(label)
	case strings.HasPrefix(target, "!"):
		if hasLabel {
			return html.EscapeString(label)
		}
		return html.EscapeString("<" + decodeEntities(body) + ">")
	}
	href := decodeEntities(target)
	text := href
	if hasLabel && label != "" {
		text = label
	}
	text = strings.TrimPrefix(text, "mailto:")
	if !safeLink(href) {
		return html.EscapeString(text)
	}
	return `<a href="` + html.EscapeString(href) + `" target="_blank" rel="noopener">` + html.EscapeString(text) + "</a>"
}

// safeLink reports whether href may become a link in the page.
func safeLink(href string) bool {
	h := strings.ToLower(href)
	return strings.HasPrefix(h, "http://") || strings.HasPrefix(h, "https://") || strings.HasPrefix(h, "mailto:")
}

// renderPlain renders a plain_text object: escaped text, with emoji
// shortcodes shown unless the object says "emoji": false.
func renderPlain(text string, withEmoji bool) string {
	s := html.EscapeString(text)
	if !withEmoji {
		return s
	}
	return emojiRE.ReplaceAllStringFunc(s, func(m string) string {
		name := emojiRE.FindStringSubmatch(m)[1]
		if e, ok := emoji[name]; ok {
			return `<span class="emoji" title=":` + name + `:">` + e + "</span>"
		}
		return m
	})
}
