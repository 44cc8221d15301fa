package emulator

import "testing"

var testDir = directory{
	user:    func(id string) string { return map[string]string{"U0ALICE": "alice"}[id] },
	channel: func(id string) string { return map[string]string{"C0OPS": "ops"}[id] },
	group:   func(id string) string { return map[string]string{"S0ONCALL": "oncall"}[id] },
}

func TestRenderMrkdwn(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "hello", "hello"},
		{"bold", "*run* started", "<b>run</b> started"},
		{"italic", "_slow_ step", "<i>slow</i> step"},
		{"strike", "~cancelled~", "<s>cancelled</s>"},
		{"nested", "*_both_*", "<b><i>both</i></b>"},
		{"styles need boundaries", "snake_case_name 2*3*4 a~b~c", "snake_case_name 2*3*4 a~b~c"},
		{"no space inside the markers", "* not bold *", "* not bold *"},
		{"style stops at the line end", "*open\nclose*", "*open<br>close*"},
		{"inline code", "run `kubectl get *pods*`", "run <code>kubectl get *pods*</code>"},
		{"code keeps emoji shortcodes", "`:x:`", "<code>:x:</code>"},
		{"unclosed backtick", "a ` b", "a ` b"},
		{"code block", "```\nline *1*\n&lt;b&gt;\n```", `<pre class="code">line *1*<br>&lt;b&gt;<br></pre>`},
		{"unclosed fence", "``` x", "``` x"},
		{"entities", "a &lt;b&gt; &amp; c", "a &lt;b&gt; &amp; c"},
		{"raw angle brackets are a control sequence, never HTML", "<script>x", "scriptx"},
		{"user mention", "by <@U0ALICE>", `by <span class="mention">@alice</span>`},
		{"unknown user keeps its label", "<@U0NOBODY|bob>", `<span class="mention">@bob</span>`},
		{"unknown user without label", "<@U0NOBODY>", `<span class="mention">@U0NOBODY</span>`},
		{"channel", "in <#C0OPS>", `in <span class="mention">#ops</span>`},
		{"channel with label", "<#C0OTHER|incidents>", `<span class="mention">#incidents</span>`},
		{"user group", "<!subteam^S0ONCALL>", `<span class="mention">@oncall</span>`},
		{"user group label", "<!subteam^S0X|@sre-leads>", `<span class="mention">@sre-leads</span>`},
		{"here", "<!here> look", `<span class="mention">@here</span> look`},
		{"date fallback", "<!date^1392734382^{date_short}|Feb 18, 2014>", "Feb 18, 2014"},
		{"link", "<https://example.com/a?b=1&amp;c=2|the run>", `<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener">the run</a>`},
		{"bare link", "<https://example.com>", `<a href="https://example.com" target="_blank" rel="noopener">https://example.com</a>`},
		{"mailto", "<mailto:a@example.com|a@example.com>", `<a href="mailto:a@example.com" target="_blank" rel="noopener">a@example.com</a>`},
		{"no javascript links", "<javascript:alert(1)|click>", "click"},
		{"bold mention", "*<@U0ALICE>*", `<b><span class="mention">@alice</span></b>`},
		{"link keeps underscores", "<https://x.io/a_b_c>", `<a href="https://x.io/a_b_c" target="_blank" rel="noopener">https://x.io/a_b_c</a>`},
		{"emoji", ":gear: step", `<span class="emoji" title=":gear:">⚙️</span> step`},
		{"emoji in bold", "*:white_check_mark: success*", `<b><span class="emoji" title=":white_check_mark:">✅</span> success</b>`},
		{"emoji with skin tone", ":+1::skin-tone-3:", `<span class="emoji" title=":+1:">👍</span>`},
		{"unknown emoji stays", ":partyparrot:", ":partyparrot:"},
		{"quote", "&gt; quoted *text*\nnext", `<span class="quote">quoted <b>text</b></span><br>next`},
		{"placeholder bytes are dropped", "a\x000\x01b", "a0b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := renderMrkdwn(tc.in, testDir); got != tc.want {
				t.Errorf("renderMrkdwn(%q)\n got %s\nwant %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestRenderPlain(t *testing.T) {
	for _, tc := range []struct {
		in    string
		emoji bool
		want  string
	}{
		{":x: Reject <now>", true, `<span class="emoji" title=":x:">❌</span> Reject &lt;now&gt;`},
		{":x: Reject", false, ":x: Reject"},
		{"*not bold*", true, "*not bold*"},
	} {
		if got := renderPlain(tc.in, tc.emoji); got != tc.want {
			t.Errorf("renderPlain(%q, %v) = %s, want %s", tc.in, tc.emoji, got, tc.want)
		}
	}
}

func TestEmojiTableCoversTheBot(t *testing.T) {
	// The shortcodes the bot and its docs use must not show raw.
	for _, name := range []string{
		"gear", "white_check_mark", "x", "hourglass_flowing_sand", "hourglass", "warning",
		"rotating_light", "no_entry", "no_entry_sign", "octagonal_sign", "alarm_clock",
		"arrow_forward", "ballot_box_with_check", "fast_forward", "fire", "information_source",
		"large_orange_diamond", "leftwards_arrow_with_hook", "lock", "mag", "mega", "memo",
		"point_right", "question", "white_circle",
	} {
		if emoji[name] == "" {
			t.Errorf(":%s: has no emoji", name)
		}
	}
}
