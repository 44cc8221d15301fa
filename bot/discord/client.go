package discord

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/runbookbot/runbookbot/bot"
	"github.com/runbookbot/runbookbot/commands/alerts"
)

// ClientOptions tune a Client.
type ClientOptions struct {
	// Runbooks lists the runbooks for autocomplete.
	Runbooks func() []RunbookHint
	// WatchChannels are alert channels (#names or ids) resolved at start
	// and marked watched.
	WatchChannels []string
	// OnReady runs once the gateway is open and the guilds are known,
	// before Ready is closed (e.g. to refresh RBAC role members).
	OnReady func(ctx context.Context)
	// FormBudget is how long a click that may open a form (reject,
	// bypass) waits for the core before it is acked without one (default
	// 2s; Discord allows 3s and a form can only be the first answer).
	FormBudget time.Duration
	Logger     *slog.Logger
}

// Client is the Gateway connection feeding a Bot: interactions are acked
// at once (a deferred answer, edited when the core has answered), except a
// click that may open a form, which waits for the core within FormBudget.
// Every handler runs in its own goroutine, which Run waits for.
type Client struct {
	p    *Platform
	b    *bot.Bot
	log  *slog.Logger
	opts ClientOptions

	mu     sync.Mutex
	ctx    context.Context // handlers run under it
	closed bool
	wg     sync.WaitGroup
	acks   []time.Duration
	ready  chan struct{} // closed once commands are registered
	work   chan struct{} // slots for the core's work after an ack
	up     atomic.Bool   // the gateway is connected
	self   string
}

// NewClient connects b to Discord through p.
func NewClient(p *Platform, b *bot.Bot, opts ClientOptions) *Client {
	if opts.Logger == nil {
		opts.Logger = p.log
	}
	if opts.FormBudget <= 0 {
		opts.FormBudget = 2 * time.Second
	}
	return &Client{p: p, b: b, log: opts.Logger, opts: opts, ready: make(chan struct{}),
		work: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
}

// handle runs the core on an acked interaction. Only a few run at once,
// so that under a burst the CPU goes to acking the others first (an
// unacked interaction fails after 3 seconds; an acked one has 15 minutes).
func (c *Client) handle(ctx context.Context, req bot.Request) bot.Response {
	c.work <- struct{}{}
	defer func() { <-c.work }()
	return c.b.Handle(ctx, req)
}

// Ready is closed once the gateway is open and /runbook is registered.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Connected reports whether the client is ready and its gateway
// connection is up (discordgo reconnects on its own when it drops).
func (c *Client) Connected() bool {
	select {
	case <-c.ready:
		return c.up.Load()
	default:
		return false
	}
}

// AckLatencies returns how long each interaction waited for its first
// answer, from its arrival to the answer's return.
func (c *Client) AckLatencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.acks...)
}

// spawn runs f as a handler Run waits for; it does nothing once Run is
// stopping.
func (c *Client) spawn(f func(ctx context.Context)) {
	c.mu.Lock()
	if c.closed || c.ctx == nil {
		c.mu.Unlock()
		return
	}
	ctx := c.ctx
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		f(ctx)
	}()
}

// Run opens the Gateway, registers /runbook, and handles events until ctx
// ends; it returns once every handler it started has finished.
func (c *Client) Run(ctx context.Context) error {
	s := c.p.s
	c.mu.Lock()
	// Handlers outlive a cancelled ctx long enough to answer.
	c.ctx = context.WithoutCancel(ctx)
	c.mu.Unlock()
	removers := []func(){
		s.AddHandler(func(_ *discordgo.Session, e *discordgo.InteractionCreate) { c.onInteraction(e) }),
		s.AddHandler(func(_ *discordgo.Session, e *discordgo.MessageCreate) { c.onMessage(e) }),
		s.AddHandler(func(_ *discordgo.Session, e *discordgo.GuildCreate) { c.onGuild(e) }),
		s.AddHandler(func(_ *discordgo.Session, _ *discordgo.Connect) { c.up.Store(true) }),
		s.AddHandler(func(_ *discordgo.Session, _ *discordgo.Disconnect) { c.up.Store(false) }),
	}
	defer func() {
		for _, r := range removers {
			r()
		}
	}()
	if err := s.Open(); err != nil {
		return fmt.Errorf("discord: opening the gateway: %w", redact(err))
	}
	defer func() {
		_ = s.Close()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.wg.Wait()
	}()
	c.setup(ctx)
	<-ctx.Done()
	return nil
}

// setup learns who the bot is and where it is, registers /runbook and
// resolves the watched channels.
func (c *Client) setup(ctx context.Context) {
	s := c.p.s
	appID := ""
	var guilds []string
	s.State.RLock()
	if s.State.User != nil {
		c.self = s.State.User.ID
		appID = s.State.User.ID
	}
	for _, g := range s.State.Guilds {
		guilds = append(guilds, g.ID)
	}
	if app := s.State.Application; app != nil && app.ID != "" {
		appID = app.ID
	}
	s.State.RUnlock()
	c.p.mu.Lock()
	if c.p.selfID == "" {
		c.p.selfID = c.self
	}
	c.p.mu.Unlock()
	sort.Strings(guilds)
	c.p.setGuilds(guilds)
	cmds := Commands()
	for _, g := range c.p.guilds() {
		if _, err := s.ApplicationCommandBulkOverwrite(appID, g, cmds, discordgo.WithContext(ctx)); err != nil {
			c.log.Error("discord: cannot register /runbook in a guild", "guild", g, "err", redact(err))
		}
	}
	if c.p.cfg.GlobalCommands {
		if _, err := s.ApplicationCommandBulkOverwrite(appID, "", cmds, discordgo.WithContext(ctx)); err != nil {
			c.log.Error("discord: cannot register /runbook globally", "err", redact(err))
		}
	}
	for _, ch := range c.opts.WatchChannels {
		if id, _, err := c.p.channel(ctx, ch); err == nil {
			c.b.WatchChannelID(id)
		} else if strings.HasPrefix(ch, "#") {
			c.log.Debug("discord: alert channel not in the bot's guilds", "channel", ch, "err", err)
		}
	}
	if c.opts.OnReady != nil {
		c.opts.OnReady(ctx)
	}
	c.log.Info("discord: connected", "guilds", len(c.p.guilds()), "user", c.self)
	close(c.ready)
}

// onGuild keeps the list of served guilds when none is configured.
func (c *Client) onGuild(e *discordgo.GuildCreate) {
	if len(c.p.cfg.Guilds) > 0 || e.Guild == nil {
		return
	}
	gs := c.p.guilds()
	for _, g := range gs {
		if g == e.ID {
			return
		}
	}
	c.p.setGuilds(append(gs, e.ID))
}

func userOf(i *discordgo.Interaction) string {
	switch {
	case i.Member != nil && i.Member.User != nil:
		return i.Member.User.ID
	case i.User != nil:
		return i.User.ID
	}
	return ""
}

func (c *Client) onInteraction(e *discordgo.InteractionCreate) {
	recv := time.Now()
	if e.Interaction == nil || e.ID == "" || e.Token == "" {
		c.log.Warn("discord: an interaction that could not be read was dropped")
		return
	}
	i := e.Interaction
	c.spawn(func(ctx context.Context) { c.interaction(ctx, i, recv) })
}

func (c *Client) interaction(ctx context.Context, i *discordgo.Interaction, recv time.Time) {
	user := userOf(i)
	if user == "" {
		return
	}
	c.p.remember(user, i)
	switch i.Type {
	case discordgo.InteractionApplicationCommand:
		c.command(ctx, i, user, recv)
	case discordgo.InteractionMessageComponent:
		c.component(ctx, i, user, recv)
	case discordgo.InteractionModalSubmit:
		c.submit(ctx, i, user, recv)
	case discordgo.InteractionApplicationCommandAutocomplete:
		var hints []RunbookHint
		if c.opts.Runbooks != nil {
			hints = c.opts.Runbooks()
		}
		choices := suggest(i.ApplicationCommandData(), hints)
		if choices == nil {
			choices = []*discordgo.ApplicationCommandOptionChoice{}
		}
		c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionApplicationCommandAutocompleteResult,
			Data: &discordgo.InteractionResponseData{Choices: choices}})
	}
}

// respond sends an interaction's first answer and records how long it
// took to come.
func (c *Client) respond(ctx context.Context, i *discordgo.Interaction, recv time.Time, r *discordgo.InteractionResponse) bool {
	err := c.p.s.InteractionRespond(i, r, discordgo.WithContext(ctx))
	c.mu.Lock()
	c.acks = append(c.acks, time.Since(recv))
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("discord: cannot answer an interaction", "type", i.Type, "err", redact(err))
		return false
	}
	return true
}

func ephemeral(m bot.Message) *discordgo.InteractionResponseData {
	r := Render(m)
	return &discordgo.InteractionResponseData{Content: r.Content, Embeds: r.Embeds, Components: r.Components,
		AllowedMentions: r.Mentions, Flags: discordgo.MessageFlagsEphemeral}
}

// formFallback is the answer when a form cannot be opened.
func formFallback(m *bot.Modal) bot.Message {
	return bot.Message{Blocks: []bot.Block{{Kind: bot.KindSection, Text: bot.R(bot.Sym(bot.StatusWarning),
		bot.Txt(" I could not open the form; type "), bot.Code("/runbook "+m.Command+" ..."), bot.Txt(" instead."))}}}
}

// command answers /runbook: deferred at once (only the user sees it), the
// core's answer then replaces it.
func (c *Client) command(ctx context.Context, i *discordgo.Interaction, user string, recv time.Time) {
	line := CommandLine(i.ApplicationCommandData())
	if !c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Flags: discordgo.MessageFlagsEphemeral}}) {
		return
	}
	resp := c.handle(ctx, bot.Request{Platform: Name, User: user, Conversation: i.ChannelID, Line: line})
	if resp.Modal != nil && resp.Reply == nil {
		m := formFallback(resp.Modal)
		resp.Reply, resp.Ephemeral = &m, true
	}
	switch {
	case resp.Reply == nil:
		// Nothing to say (a run: its thread is the answer).
		if err := c.p.s.InteractionResponseDelete(i, discordgo.WithContext(ctx)); err != nil {
			c.log.Debug("discord: cannot remove a deferred answer", "err", redact(err))
		}
	case resp.Ephemeral:
		r := Render(*resp.Reply)
		embeds, comps := r.Embeds, r.Components
		if embeds == nil {
			embeds = []*discordgo.MessageEmbed{}
		}
		if comps == nil {
			comps = []discordgo.MessageComponent{}
		}
		if _, err := c.p.s.InteractionResponseEdit(i, &discordgo.WebhookEdit{Content: &r.Content, Embeds: &embeds,
			Components: &comps, AllowedMentions: r.Mentions}, discordgo.WithContext(ctx)); err != nil {
			c.log.Warn("discord: cannot answer a command; whispering instead", "err", redact(err))
			c.b.Whisper(Name, i.ChannelID, user, *resp.Reply)
		}
	default:
		_ = c.p.s.InteractionResponseDelete(i, discordgo.WithContext(ctx))
		if _, err := c.p.Post(ctx, i.ChannelID, "", *resp.Reply); err != nil {
			c.log.Warn("discord: cannot post an answer", "err", err)
		}
	}
}

// mayOpenForm reports whether a click's command line can be answered with
// a form (rejecting and bypassing ask for a reason first).
func mayOpenForm(line string) bool {
	verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	return verb == "reject" || verb == "bypass"
}

// component answers a button click.
func (c *Client) component(ctx context.Context, i *discordgo.Interaction, user string, recv time.Time) {
	cd := i.MessageComponentData()
	id, line, ok := DecodeButton(cd.CustomID)
	if !ok {
		id, line = cd.CustomID, ""
	}
	req := bot.Request{Platform: Name, User: user, Conversation: i.ChannelID, Line: line, Button: id}
	if !mayOpenForm(line) {
		if !c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}) {
			return
		}
		c.followUp(ctx, i, user, c.handle(ctx, req))
		return
	}
	done := make(chan bot.Response, 1)
	c.spawn(func(ctx context.Context) { done <- c.b.Handle(ctx, req) })
	timer := time.NewTimer(c.opts.FormBudget)
	defer timer.Stop()
	select {
	case resp := <-done:
		switch {
		case resp.Modal != nil:
			if c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseModal, Data: modalView(*resp.Modal)}) {
				return
			}
			// The form could not be opened: say so, as a follow-up.
			m := formFallback(resp.Modal)
			c.b.Whisper(Name, i.ChannelID, user, m)
		case resp.Reply != nil:
			c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource, Data: ephemeral(*resp.Reply)})
		default:
			c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate})
		}
	case <-timer.C:
		if !c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}) {
			return
		}
		resp := <-done
		if resp.Modal != nil && resp.Reply == nil {
			m := formFallback(resp.Modal)
			resp.Reply = &m
		}
		c.followUp(ctx, i, user, resp)
	}
}

// followUp shows the core's answer to an acked interaction, to its user
// only.
func (c *Client) followUp(ctx context.Context, i *discordgo.Interaction, user string, resp bot.Response) {
	if resp.Reply == nil && resp.Modal != nil {
		m := formFallback(resp.Modal)
		resp.Reply = &m
	}
	if resp.Reply == nil {
		return
	}
	r := Render(*resp.Reply)
	if _, err := c.p.s.FollowupMessageCreate(i, true, &discordgo.WebhookParams{Content: r.Content, Embeds: r.Embeds,
		AllowedMentions: r.Mentions, Flags: discordgo.MessageFlagsEphemeral}, discordgo.WithContext(ctx)); err != nil {
		c.log.Warn("discord: cannot follow up; whispering instead", "err", redact(err))
		c.b.Whisper(Name, i.ChannelID, user, *resp.Reply)
	}
}

// submit handles a submitted form. Discord forms cannot show field
// errors, so a missing reason is answered (to the user only) at once.
func (c *Client) submit(ctx context.Context, i *discordgo.Interaction, user string, recv time.Time) {
	md := i.ModalSubmitData()
	id, line, ok := DecodeButton(md.CustomID)
	if !ok {
		id, line = md.CustomID, ""
	}
	req := bot.Request{Platform: Name, User: user, Conversation: i.ChannelID, Line: line, Form: id, Values: map[string]string{}}
	for _, row := range md.Components {
		ar, ok := row.(*discordgo.ActionsRow)
		if !ok {
			continue
		}
		for _, x := range ar.Components {
			if ti, ok := x.(*discordgo.TextInput); ok {
				req.Values[ti.CustomID] = ti.Value
			}
		}
	}
	if errs := bot.CheckForm(req); len(errs) > 0 {
		keys := make([]string, 0, len(errs))
		for k := range errs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		text := bot.R(bot.Sym(bot.StatusWarning))
		for _, k := range keys {
			text = append(text, bot.Txt(" "+errs[k]))
		}
		text = append(text, bot.Txt(" Nothing was done; click the button again."))
		m := bot.Message{Summary: text, Blocks: []bot.Block{{Kind: bot.KindSection, Text: text}}}
		c.respond(ctx, i, recv, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource, Data: ephemeral(m)})
		return
	}
	ack := &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}
	if i.Message == nil {
		ack = &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource,
			Data: &discordgo.InteractionResponseData{Flags: discordgo.MessageFlagsEphemeral}}
	}
	if !c.respond(ctx, i, recv, ack) {
		return
	}
	c.followUp(ctx, i, user, c.handle(ctx, req))
}

// onMessage passes messages from webhooks and other bots (alerts) on.
func (c *Client) onMessage(e *discordgo.MessageCreate) {
	m := e.Message
	if m == nil || m.Author == nil {
		return
	}
	c.p.mu.Lock()
	self := c.p.selfID
	c.p.mu.Unlock()
	if m.Author.ID == self || (m.WebhookID == "" && !m.Author.Bot) {
		return
	}
	c.spawn(func(ctx context.Context) { c.message(ctx, m) })
}

// ChannelMessage turns a Discord message into what the core reads alerts
// from: Alertmanager's discord_configs embeds become attachments (title,
// description, colour, fields).
func ChannelMessage(m *discordgo.Message, inThread bool) bot.ChannelMessage {
	cm := bot.ChannelMessage{Platform: Name, Channel: m.ChannelID, TS: m.ID, Text: m.Content, BotID: m.WebhookID}
	if inThread {
		cm.ThreadTS = m.ChannelID
	}
	if m.Author != nil {
		cm.Username = m.Author.Username
		if cm.BotID == "" {
			cm.BotID = m.Author.ID
		}
	}
	for _, e := range m.Embeds {
		if e == nil {
			continue
		}
		at := alerts.Attachment{Title: e.Title, TitleLink: e.URL, Text: e.Description, Fallback: e.Title}
		if e.Color != 0 {
			at.Color = fmt.Sprintf("#%06x", e.Color)
		}
		for _, f := range e.Fields {
			at.Fields = append(at.Fields, alerts.Field{Title: f.Name, Value: f.Value})
		}
		cm.Attachments = append(cm.Attachments, at)
	}
	return cm
}

func (c *Client) message(ctx context.Context, m *discordgo.Message) {
	_, info, err := c.p.channel(ctx, m.ChannelID)
	if err != nil {
		c.log.Debug("discord: message in an unknown channel", "channel", m.ChannelID, "err", err)
		return
	}
	c.b.HandleChannelMessage(ctx, ChannelMessage(m, info.thread))
}
