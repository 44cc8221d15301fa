package alerts

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// block is what a message body says about one alert.
type block struct {
	header   bool // started by an "*Alert:*" or "ALERT name" line
	name     string
	labels   map[string]string
	ann      map[string]string
	value    string
	status   string
	genURL   string
	startsAt time.Time
	endsAt   time.Time
	content  bool
}

func newBlock(status string) *block {
	return &block{labels: map[string]string{}, ann: map[string]string{}, status: status}
}

// merge adds o's content where b has none.
func (b *block) merge(o *block) {
	for k, v := range o.labels {
		if _, ok := b.labels[k]; !ok {
			b.labels[k] = v
		}
	}
	for k, v := range o.ann {
		if _, ok := b.ann[k]; !ok {
			b.ann[k] = v
		}
	}
	b.name = firstNonEmpty(b.name, o.name)
	b.value = firstNonEmpty(b.value, o.value)
	b.status = firstNonEmpty(b.status, o.status)
	b.genURL = firstNonEmpty(b.genURL, o.genURL)
	if b.startsAt.IsZero() {
		b.startsAt = o.startsAt
	}
	if b.endsAt.IsZero() {
		b.endsAt = o.endsAt
	}
	b.content = b.content || o.content
}

// Field names that are never labels, even inside a labels section.
var specialKeys = map[string]bool{
	"alert": true, "value": true, "status": true, "state": true, "source": true,
	"graph": true, "generatorurl": true, "generator_url": true, "started": true, "ended": true,
	"summary": true, "description": true, "runbook": true, "runbook_url": true,
}

// Annotation names a "*Key:* value" line is taken as, rather than a label.
var annotationKeys = map[string]bool{
	"summary": true, "description": true, "message": true, "runbook": true, "runbook_url": true,
	"dashboard": true, "dashboard_url": true, "details": true, "impact": true, "action": true, "title": true,
}

var (
	statusHeading  = regexp.MustCompile(`(?i)^[\s*_#>•:-]*alerts?\s+(firing|resolved)\b[^\pL\pN]*(?:\d+[^\pL\pN]*)?$`)
	boldField      = regexp.MustCompile(`^\s*\*{1,2}([^*:\n]{1,40}?)(?::\*{1,2}|\*{1,2}:)\s*(.*)$`)
	plainField     = regexp.MustCompile(`^\s*([A-Za-z][A-Za-z0-9 _]{0,39}?)\s*:\s+(.*)$|^\s*([A-Za-z][A-Za-z0-9 _]{0,39}?)\s*:$`)
	genericLine    = regexp.MustCompile(`^\s*(?:ALERT|Alert|alert)\s*:?\s+([A-Za-z_][A-Za-z0-9_:.-]*)(?:\s+(?i:(firing|resolved)))?((?:\s+.*)?)$`)
	kvPair         = regexp.MustCompile("(?:^|[\\s,;{(\\[])([A-Za-z_][A-Za-z0-9_]*)\\s?=\\s?(\"(?:[^\"\\\\]|\\\\.)*\"|'[^']*'|`[^`]*`|[^\\s,;})\\]]+)")
	severitySuffix = regexp.MustCompile("\\s+[-–]\\s+`([^`]*)`\\s*$")
	slackLink      = regexp.MustCompile(`<([^<>|]*)(?:\|([^<>]*))?>`)
)

// parseBody splits a body into blocks, one per alert (or context to share).
func (r Rules) parseBody(body string) []*block {
	var (
		blocks  []*block
		cur     = newBlock("")
		section string // "", "labels" or "annotations"
		status  string // from an "Alerts Firing:" heading
		blank   bool
	)
	next := func() {
		blocks = append(blocks, cur)
		cur = newBlock(status)
		section = ""
	}
	for _, raw := range strings.Split(body, "\n") {
		line := strings.TrimRight(raw, " \t\r")
		if strings.TrimSpace(line) == "" {
			blank = true
			section = ""
			continue
		}
		if blank && len(cur.labels) > 0 {
			next()
		}
		blank = false
		if m := statusHeading.FindStringSubmatch(line); m != nil {
			status = normStatus(m[1])
			if cur.content {
				next()
			}
			cur.status = status
			continue
		}
		if m := genericLine.FindStringSubmatch(cleanText(line)); m != nil && onlyPairs(m[3]) {
			if cur.header || len(cur.labels) > 0 {
				next()
			}
			cur.header, cur.content = true, true
			cur.name = m[1]
			if m[2] != "" {
				cur.status = normStatus(m[2])
			}
			cur.pairs(m[3])
			continue
		}
		bullet := isBullet(line)
		if !bullet {
			if key, val, ok := fieldLine(line); ok {
				switch nk := normKey(key); {
				case val == "" && (nk == "labels" || nk == "details"):
					if nk == "labels" && len(cur.labels) > 0 {
						next()
					}
					section = "labels"
					continue
				case val == "" && nk == "annotations":
					section = "annotations"
					continue
				case section == "" || boldField.MatchString(line) || specialKeys[nk]:
					section = ""
					if (nk == "alert" || nk == "alertname") && (cur.header || len(cur.labels) > 0) {
						next()
					}
					cur.field(key, val, true)
					continue
				}
			}
		}
		if bullet || section != "" {
			if m := r.LabelLine.FindStringSubmatch(line); m != nil {
				k := cleanText(m[r.LabelLine.SubexpIndex("key")])
				rawV := strings.TrimSpace(cleanText(m[r.LabelLine.SubexpIndex("value")]))
				v := unquote(rawV)
				if validLabelName(k) && (section != "" || v != rawV || !strings.ContainsAny(v, " \t")) {
					if section == "annotations" {
						cur.ann[k] = v
					} else {
						if _, ok := cur.labels[k]; ok {
							keep := section
							next()
							section = keep
						}
						cur.labels[k] = v
					}
					cur.content = true
					continue
				}
			}
		}
		if section != "annotations" {
			cur.pairs(cleanText(line))
		}
	}
	return append(blocks, cur)
}

// arrange drops empty blocks and folds context into alert blocks. With
// "*Alert:*" headers, blocks before the first header are shared context
// (returned as pre) and later headerless ones continue the block before
// them; without headers, blocks with no labels continue their neighbour.
func arrange(in []*block) (out []*block, pre *block) {
	headers := false
	for _, b := range in {
		headers = headers || b.header
	}
	for _, b := range in {
		if !b.content {
			continue
		}
		alone := b.header || !headers && len(b.labels) > 0
		switch {
		case alone:
			out = append(out, b)
		case len(out) > 0:
			out[len(out)-1].merge(b)
		case pre == nil:
			pre = b
		default:
			pre.merge(b)
		}
	}
	if !headers && pre != nil && len(out) > 0 {
		// Context before the first labelled block is its own, e.g. a
		// description above the details.
		out[0].merge(pre)
		pre = nil
	}
	return out, pre
}

// fieldLine reads "*Key:* value" or "Key: value".
func fieldLine(line string) (key, val string, ok bool) {
	if m := boldField.FindStringSubmatch(line); m != nil {
		return strings.TrimSpace(m[1]), strings.TrimSpace(m[2]), true
	}
	if m := plainField.FindStringSubmatch(line); m != nil {
		if m[3] != "" {
			return m[3], "", true
		}
		if strings.HasPrefix(m[2], "//") {
			return "", "", false
		}
		return m[1], strings.TrimSpace(m[2]), true
	}
	return "", "", false
}

// field records a "Key: value" line or attachment field.
func (b *block) field(key, val string, fromBody bool) {
	nk := normKey(key)
	if nk == "" {
		return
	}
	b.content = true
	switch nk {
	case "alert", "alertname", "alert_name", "name":
		if m := severitySuffix.FindStringSubmatch(val); m != nil {
			b.labels["severity"] = unquote(cleanText(m[1]))
			val = val[:len(val)-len(m[0])]
		}
		val = unquote(cleanText(strings.Trim(val, "*_ ")))
		switch {
		case validAlertName(val):
			b.name = val
			if fromBody {
				b.header = true
			}
		case val != "":
			if _, ok := b.ann["summary"]; !ok {
				b.ann["summary"] = val
			}
			if fromBody {
				b.header = true
			}
		}
		return
	case "value", "current_value":
		b.value = unquote(cleanText(val))
		return
	case "status", "state":
		b.status = normStatus(cleanText(strings.Trim(val, "*_ ")))
		return
	case "source", "graph", "generator", "generatorurl", "generator_url", "query":
		b.genURL = linkURL(val)
		return
	case "started", "starts_at", "startsat", "start_time", "start", "fired_at", "since":
		b.startsAt = parseTime(cleanText(val))
		return
	case "ended", "ends_at", "endsat", "end_time", "end", "resolved_at":
		b.endsAt = parseTime(cleanText(val))
		return
	}
	v := unquote(cleanText(val))
	if strings.HasSuffix(nk, "url") || strings.HasSuffix(nk, "link") {
		v = linkURL(val)
	}
	if !annotationKeys[nk] && validLabelName(nk) && v != "" && !strings.ContainsAny(v, " \t") && utf8.RuneCountInString(v) <= 100 {
		b.labels[nk] = v
		return
	}
	if v != "" {
		b.ann[nk] = v
	}
}

// pairs records the key=value pairs in s.
func (b *block) pairs(s string) {
	for _, m := range kvPair.FindAllStringSubmatch(s, -1) {
		k, v := m[1], unquote(m[2])
		b.content = true
		switch k {
		case "value":
			b.value = v
		case "status":
			b.status = normStatus(v)
		default:
			b.labels[k] = v
		}
	}
}

// onlyPairs reports whether s is nothing but key=value pairs.
func onlyPairs(s string) bool {
	rest := kvPair.ReplaceAllString(s, "")
	return strings.Trim(rest, " \t,;{}()[]") == ""
}

// isBullet reports whether a line is a list item.
func isBullet(line string) bool {
	t := strings.TrimLeft(line, " \t")
	r, n := utf8.DecodeRuneInString(t)
	switch r {
	case '•', '·', '▪', '◦', '‣':
		return true
	case '-', '*', '+':
		return n < len(t) && (t[n] == ' ' || t[n] == '\t')
	}
	return false
}

// normKey turns "Runbook URL" into runbook_url.
func normKey(k string) string {
	k = strings.ToLower(strings.Trim(strings.TrimSpace(k), "*_` "))
	return strings.Join(strings.Fields(k), "_")
}

// cleanText undoes Slack's formatting: <url|text> links become their text
// (or URL) and &amp; &lt; &gt; their characters.
func cleanText(s string) string {
	if strings.Contains(s, "<") {
		s = slackLink.ReplaceAllStringFunc(s, func(l string) string {
			m := slackLink.FindStringSubmatch(l)
			if m[2] != "" {
				return m[2]
			}
			return m[1]
		})
	}
	if strings.Contains(s, "&") {
		s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
	}
	return s
}

// linkURL returns the URL of a Slack link, or the text itself.
func linkURL(s string) string {
	if m := slackLink.FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(strings.TrimSpace(s))
}

// unquote strips one pair of backticks or quotes and surrounding space.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 {
		switch f, l := s[0], s[len(s)-1]; {
		case f == l && (f == '`' || f == '"' || f == '\''):
			s = s[1 : len(s)-1]
			if f == '"' {
				s = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s)
			}
		}
	}
	return strings.TrimSpace(s)
}

// parseTime reads the time formats templates print; anything else (such
// as "5m ago") is zero.
func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999 -0700 MST", "2006-01-02 15:04:05 -0700 MST", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
