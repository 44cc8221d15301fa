package alerts

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// SlackMessage is a Slack message as the bot sees it: the fields the Slack
// adapter copies from a message event. The JSON names are Slack's, so a
// message event unmarshals into it directly.
type SlackMessage struct {
	Text        string       `json:"text"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Username    string       `json:"username,omitempty"`
	BotID       string       `json:"bot_id,omitempty"`
}

// Attachment is a Slack message attachment, which Alertmanager's
// slack_configs fill: title, title_link, pretext, text, fallback, color and
// fields.
type Attachment struct {
	Title     string  `json:"title,omitempty"`
	TitleLink string  `json:"title_link,omitempty"`
	Text      string  `json:"text,omitempty"`
	Fallback  string  `json:"fallback,omitempty"`
	Color     string  `json:"color,omitempty"`
	Pretext   string  `json:"pretext,omitempty"`
	Fields    []Field `json:"fields,omitempty"`
}

// Field is an attachment field; its title is read as a label name.
type Field struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// ErrNotAlert is returned by the parsers for input that holds no alert (a
// person talking in the channel, say).
var ErrNotAlert = errors.New("not an alert notification")

// Rules say how to read alert messages. The zero value is not usable; start
// from DefaultRules and change what differs.
type Rules struct {
	// TitleRegexp matches a notification title. Named groups: status
	// (FIRING or RESOLVED), count (optional), values (the space-separated
	// group label values) and common (the parenthesised common label
	// values). The default matches Alertmanager's "__subject" template.
	TitleRegexp *regexp.Regexp
	// LabelLine matches one label line of a message body, with named groups
	// key and value. It is tried on lines that start with a bullet (•, -, *)
	// and on every line of a "Labels:" or "Details:" section. The default
	// reads " • *key:* `value`", " - key = value" and "key: value".
	LabelLine *regexp.Regexp
	// KeyOrder names the title's values, in order: the route's group_by
	// labels as Alertmanager sorts them (alertname first, then by name).
	// The default is just alertname. Values past the list go to
	// Alert.Unkeyed.
	KeyOrder []string
	// CommonKeys names the parenthesised values of the title, in order, and
	// is applied only when there are exactly that many; Alertmanager shows
	// there the labels all alerts share beyond the group labels, sorted by
	// name, so the set changes from one notification to the next.
	CommonKeys []string
}

// DefaultRules reads Alertmanager's default Slack title and the common
// custom templates.
func DefaultRules() Rules {
	return Rules{
		TitleRegexp: defaultTitle,
		LabelLine:   defaultLabelLine,
		KeyOrder:    []string{"alertname"},
	}
}

var (
	defaultTitle     = regexp.MustCompile(`(?i)^\s*\[(?P<status>FIRING|RESOLVED)(?::\s*(?P<count>\d+))?\]\s*(?P<values>.*?)\s*(?:\((?P<common>.*)\))?\s*$`)
	defaultLabelLine = regexp.MustCompile(`^\s*(?:[•·▪◦‣*+-]\s*)?\*?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\*?\s*(?::\*?|=)\s*(?P<value>.*?)\s*$`)
)

// CompileRules builds Rules from configuration text; empty patterns keep
// the defaults.
func CompileRules(titleRegexp, labelLine string, keyOrder, commonKeys []string) (Rules, error) {
	r := DefaultRules()
	if titleRegexp != "" {
		re, err := regexp.Compile(titleRegexp)
		if err != nil {
			return r, fmt.Errorf("title regexp: %w", err)
		}
		r.TitleRegexp = re
	}
	if labelLine != "" {
		re, err := regexp.Compile(labelLine)
		if err != nil {
			return r, fmt.Errorf("label line regexp: %w", err)
		}
		if re.SubexpIndex("key") < 0 || re.SubexpIndex("value") < 0 {
			return r, fmt.Errorf("label line regexp: needs named groups key and value")
		}
		r.LabelLine = re
	}
	if len(keyOrder) > 0 {
		r.KeyOrder = append([]string(nil), keyOrder...)
	}
	r.CommonKeys = append([]string(nil), commonKeys...)
	return r, nil
}

// ParseSlackMessage reads the alerts in a Slack message with DefaultRules.
func ParseSlackMessage(m SlackMessage) ([]Alert, error) {
	return DefaultRules().ParseSlackMessage(m)
}

// ParseSlackMessage reads the alerts in a Slack message: each attachment's
// title, colour, fields, pretext and text, or the message text when there
// are no attachments. It returns ErrNotAlert when nothing names an alert.
func (r Rules) ParseSlackMessage(m SlackMessage) ([]Alert, error) {
	r = r.withDefaults()
	var out []Alert
	for i, at := range m.Attachments {
		p := piece{title: at.Title, color: at.Color, fields: at.Fields}
		if p.title == "" {
			// The default fallback is "<title> | <title link>".
			p.title, _, _ = strings.Cut(at.Fallback, " | ")
		}
		var body []string
		if i == 0 && strings.TrimSpace(m.Text) != "" {
			body = append(body, m.Text)
		}
		body = append(body, at.Pretext, at.Text)
		p.body = strings.Join(body, "\n")
		out = append(out, r.parsePiece(p, SourceSlack)...)
	}
	if len(m.Attachments) == 0 {
		out = r.parseText(m.Text, SourceSlack)
	}
	out = dedupe(out)
	if len(out) == 0 {
		return nil, ErrNotAlert
	}
	return out, nil
}

// withDefaults fills unset fields, so a partly filled Rules still works.
func (r Rules) withDefaults() Rules {
	if r.TitleRegexp == nil {
		r.TitleRegexp = defaultTitle
	}
	if r.LabelLine == nil {
		r.LabelLine = defaultLabelLine
	}
	if r.KeyOrder == nil {
		r.KeyOrder = []string{"alertname"}
	}
	return r
}

// parseText reads a message with no attachment: the first line may be a
// title; the rest is a body.
func (r Rules) parseText(text, source string) []Alert {
	text = strings.TrimSpace(text)
	first, rest, _ := strings.Cut(text, "\n")
	if r.TitleRegexp.MatchString(strings.Trim(cleanText(first), "*_ ")) {
		return r.parsePiece(piece{title: first, body: rest}, source)
	}
	return r.parsePiece(piece{body: text}, source)
}

// piece is one notification to read: an attachment, or a text message.
type piece struct {
	title, color, body string
	fields             []Field
}

// titleInfo is what a title says.
type titleInfo struct {
	status  string
	count   int
	value   string
	labels  map[string]string
	unkeyed []string
}

// parseTitle reads a title with TitleRegexp, naming its values with
// KeyOrder and CommonKeys; key=value tokens name themselves.
func (r Rules) parseTitle(title string) (titleInfo, bool) {
	ti := titleInfo{labels: map[string]string{}}
	title = strings.Trim(cleanText(strings.TrimSpace(title)), "*_ ")
	m := r.TitleRegexp.FindStringSubmatch(title)
	if m == nil {
		return ti, false
	}
	group := func(name string) string {
		if i := r.TitleRegexp.SubexpIndex(name); i >= 0 && i < len(m) {
			return m[i]
		}
		return ""
	}
	if s := group("status"); s != "" {
		ti.status = normStatus(s)
	}
	ti.count, _ = strconv.Atoi(group("count"))
	pos := 0
	for _, tok := range strings.Fields(group("values")) {
		if k, v, ok := kvToken(tok); ok {
			ti.set(k, v)
			continue
		}
		if pos < len(r.KeyOrder) && r.KeyOrder[pos] != "" {
			ti.labels[r.KeyOrder[pos]] = tok
		} else {
			ti.unkeyed = append(ti.unkeyed, tok)
		}
		pos++
	}
	var common []string
	for _, tok := range strings.Fields(group("common")) {
		if k, v, ok := kvToken(tok); ok {
			ti.set(k, v)
			continue
		}
		common = append(common, tok)
	}
	if len(common) > 0 && len(common) == len(r.CommonKeys) {
		for i, k := range r.CommonKeys {
			ti.labels[k] = common[i]
		}
	} else {
		ti.unkeyed = append(ti.unkeyed, common...)
	}
	if n := ti.labels["alertname"]; n != "" && !validAlertName(n) {
		delete(ti.labels, "alertname")
		ti.unkeyed = append([]string{n}, ti.unkeyed...)
	}
	return ti, true
}

// set records a key=value token of the title.
func (ti *titleInfo) set(k, v string) {
	switch k {
	case "value":
		ti.value = v
	case "status":
		ti.status = normStatus(v)
	default:
		ti.labels[k] = v
	}
}

// kvToken splits "key=value" (value optionally quoted).
func kvToken(tok string) (string, string, bool) {
	k, v, ok := strings.Cut(tok, "=")
	if !ok || !validLabelName(k) {
		return "", "", false
	}
	return k, unquote(v), true
}

// colorStatus reads an attachment colour: Alertmanager's default is danger
// when firing and good when resolved; Slack may hand them back as hex.
func colorStatus(c string) string {
	c = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(c), "#"))
	switch c {
	case "danger", "warning", "a30200", "d50200", "daa038", "e01e5a":
		return StatusFiring
	case "good", "2eb886", "36a64f", "2eb67d":
		return StatusResolved
	}
	if len(c) != 6 {
		return ""
	}
	rgb, err := strconv.ParseUint(c, 16, 32)
	if err != nil {
		return ""
	}
	red, green := int(rgb>>16), int(rgb>>8&0xff)
	switch {
	case red > green+60:
		return StatusFiring
	case green > red+60:
		return StatusResolved
	}
	return ""
}

// parsePiece turns one notification into alerts: title labels hold for
// every alert, then fields, then each body block's own.
func (r Rules) parsePiece(p piece, source string) []Alert {
	ti, titled := r.parseTitle(p.title)
	status := ti.status
	if status == "" {
		status = colorStatus(p.color)
	}
	common := &block{labels: map[string]string{}, ann: map[string]string{}}
	for _, f := range p.fields {
		common.field(cleanText(f.Title), f.Value, false)
	}
	blocks := r.parseBody(p.body)
	blocks, pre := arrange(blocks)
	if pre != nil {
		common.merge(pre)
	}
	if len(blocks) == 0 {
		if !titled && len(common.labels) == 0 && common.name == "" {
			return nil
		}
		blocks = []*block{{labels: map[string]string{}, ann: map[string]string{}}}
	}
	var out []Alert
	for _, b := range blocks {
		a := Alert{Labels: map[string]string{}, Annotations: map[string]string{}}
		for _, src := range []map[string]string{ti.labels, common.labels, b.labels} {
			for k, v := range src {
				a.Labels[k] = v
			}
		}
		for _, src := range []map[string]string{common.ann, b.ann} {
			for k, v := range src {
				a.Annotations[k] = v
			}
		}
		a.Name = firstNonEmpty(b.labels["alertname"], b.name, common.labels["alertname"], common.name, ti.labels["alertname"])
		if a.Name == "" {
			continue
		}
		a.Status = firstNonEmpty(b.status, common.status, status)
		a.Value = firstNonEmpty(b.value, common.value, ti.value)
		a.GeneratorURL = firstNonEmpty(b.genURL, common.genURL)
		a.StartsAt, a.EndsAt = b.startsAt, b.endsAt
		a.Unkeyed = unkeyedNotIn(ti.unkeyed, a.Labels)
		a.finish(source)
		out = append(out, a)
	}
	return out
}

// unkeyedNotIn drops title values that the body has since named.
func unkeyedNotIn(vals []string, labels map[string]string) []string {
	have := map[string]bool{}
	for _, v := range labels {
		have[v] = true
	}
	var out []string
	for _, v := range vals {
		if !have[v] {
			out = append(out, v)
		}
	}
	return out
}

// dedupe keeps the first alert of each fingerprint.
func dedupe(in []Alert) []Alert {
	seen := map[string]bool{}
	out := in[:0]
	for _, a := range in {
		if seen[a.Fingerprint] {
			continue
		}
		seen[a.Fingerprint] = true
		out = append(out, a)
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
