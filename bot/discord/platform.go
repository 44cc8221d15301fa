// Package discord connects the bot to Discord through discordgo: the
// Gateway for interactions (the /runbook command, buttons, forms) and
// channel messages (alerts), REST for everything the bot shows. It renders
// the core's neutral messages as Discord markdown, embeds and buttons. It
// is the only package that imports discordgo, and the only one that knows
// Discord's ids, limits and markup.
//
// An execution's thread is a public thread started from its parent
// message (on Discord a thread's id is the id of the message it starts
// from, so the core's opaque thread reference is that message id); its
// steps are messages in the thread, edited in place. Requests go to
// Config.APIURL when set (an emulator), else to Discord; every response's
// rate-limit headers are learned, and a call Discord would refuse is not
// sent: the platform answers *bot.RateLimitedError and the core waits.
package discord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/runbookbot/runbookbot/bot"
)

// Name is Discord's name in execution triggers and RBAC user ids
// ("discord:<user id>").
const Name = "discord"

// Config reaches Discord.
type Config struct {
	// Token is the bot token (with or without "Bot ").
	Token string
	// APIURL replaces https://discord.com/ (an emulator's base URL, e.g.
	// http://127.0.0.1:3001/); a trailing api/v9/ or api/v10/ is allowed.
	APIURL string
	// Guilds are the guild ids to serve (commands are registered in each);
	// empty serves every guild the bot is in.
	Guilds []string
	// GlobalCommands registers /runbook globally as well.
	GlobalCommands bool
	// NoMessageContent connects without the privileged MESSAGE_CONTENT
	// intent (Discord closes the gateway with 4014 when it is asked for
	// but not enabled in the Developer Portal); alerts posted in channels
	// then arrive blank and are not read.
	NoMessageContent bool
	Logger           *slog.Logger
	// HTTPTimeout bounds one REST call (default 20s).
	HTTPTimeout time.Duration
}

// Platform sends the bot's messages through Discord's REST API.
type Platform struct {
	s     *discordgo.Session
	lim   *limits
	log   *slog.Logger
	web   string // base of message links
	cfg   Config
	start time.Time

	mu       sync.Mutex
	names    map[string]string   // "#name" → channel id
	chans    map[string]chanInfo // channel id → what it is
	threads  map[string]bool     // message ids that have a thread
	titles   map[string]string   // message id → thread name for it
	tokens   map[string]tokenRef // user id → their latest interaction
	dms      map[string]string   // user id → DM channel id
	selfID   string
	guildIDs []string
}

// chanInfo is what the platform knows of a channel.
type chanInfo struct {
	guild  string
	thread bool
}

// tokenRef is a user's latest interaction, whose token can show them
// ephemeral messages for 15 minutes.
type tokenRef struct {
	i    *discordgo.Interaction
	when time.Time
}

var _ bot.Platform = (*Platform)(nil)

// New returns a platform with its own discordgo session (nothing is
// connected yet).
func New(cfg Config) (*Platform, error) {
	if cfg.Token == "" {
		return nil, errors.New("discord: no bot token")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = 20 * time.Second
	}
	token := cfg.Token
	if !strings.HasPrefix(token, "Bot ") {
		token = "Bot " + token
	}
	s, err := discordgo.New(token)
	if err != nil {
		return nil, fmt.Errorf("discord: %w", err)
	}
	lim := newLimits()
	// Interactions are answered concurrently: keep enough connections
	// open that an answer never waits for one (the default keeps two).
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	tr := &transport{next: base, lim: lim}
	web := "https://discord.com/"
	if cfg.APIURL != "" {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(cfg.APIURL, "/"), "/api/v9"), "/api/v10")
		u, err := url.Parse(base)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("discord: bad API URL %q", cfg.APIURL)
		}
		tr.base = u
		web = strings.TrimSuffix(base, "/") + "/"
	}
	s.Client = &http.Client{Transport: tr, Timeout: cfg.HTTPTimeout}
	// A 429 comes back as an error so the core's outbox waits; discordgo
	// would otherwise sleep inside the call.
	s.ShouldRetryOnRateLimit = false
	s.MaxRestRetries = 2
	s.LogLevel = discordgo.LogWarning
	s.SyncEvents = true // handlers spawn their own (owned) goroutines
	s.Identify.Intents = discordgo.IntentsGuilds | discordgo.IntentsGuildMessages | discordgo.IntentsDirectMessages
	if !cfg.NoMessageContent {
		s.Identify.Intents |= discordgo.IntentMessageContent
	}
	return &Platform{s: s, lim: lim, log: cfg.Logger, web: web, cfg: cfg, start: time.Now(),
		names: map[string]string{}, chans: map[string]chanInfo{}, threads: map[string]bool{}, titles: map[string]string{},
		tokens: map[string]tokenRef{}, dms: map[string]string{}}, nil
}

// Session returns the discordgo session (for the client and tests).
func (p *Platform) Session() *discordgo.Session { return p.s }

// Check verifies the token (GET /users/@me) so a bad one fails at start,
// and returns the bot's user id.
func (p *Platform) Check(ctx context.Context) (string, error) {
	u, err := p.s.User("@me", discordgo.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("discord: checking the bot token: %w", redact(err))
	}
	p.mu.Lock()
	p.selfID = u.ID
	p.mu.Unlock()
	return u.ID, nil
}

// Name is the platform's name in execution triggers.
func (p *Platform) Name() string { return Name }

// DefaultLimits stay under Discord's per-channel buckets (5 messages and
// 5 edits per 5 seconds) with room for answers to people; the learned
// bucket headers keep the rest exact.
func DefaultLimits() bot.Limits {
	return bot.Limits{PostBurst: 2, PostEvery: 1200 * time.Millisecond, UpdateBurst: 4, UpdateEvery: 1100 * time.Millisecond, StepPatience: 5 * time.Second}
}

// Limits implements bot.Platform.
func (p *Platform) Limits() bot.Limits { return DefaultLimits() }

// RESTCalls counts the REST requests sent and the 429s received.
func (p *Platform) RESTCalls() (calls, rateLimited int64) {
	return p.lim.calls.Load(), p.lim.hits.Load()
}

// tokenish matches what could be a token in text: long runs of token
// characters (ids are at most 20 digits).
var tokenish = regexp.MustCompile(`[A-Za-z0-9_\-.]{24,}`)

// redact keeps tokens out of errors: discordgo's errors quote request URLs
// (which carry interaction and webhook tokens) and response bodies; only
// Discord's error code and a scrubbed message are kept.
func redact(err error) error {
	if err == nil {
		return nil
	}
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Message != nil {
		return fmt.Errorf("discord API error %d: %s", re.Message.Code, tokenish.ReplaceAllString(re.Message.Message, "…"))
	}
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("discord API: HTTP %d", re.Response.StatusCode)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("discord API %s: %w", ue.Op, ue.Err)
	}
	return err
}

// convert turns a rate limit into the core's error, and hides tokens.
func convert(err error) error {
	if err == nil {
		return nil
	}
	var rl *discordgo.RateLimitError
	if errors.As(err, &rl) && rl.RateLimit != nil && rl.TooManyRequests != nil {
		return &bot.RateLimitedError{RetryAfter: max(rl.RetryAfter, 100*time.Millisecond)}
	}
	return redact(err)
}

// restCode returns the JSON error code of a Discord REST error, or 0.
func restCode(err error) int {
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Message != nil {
		return re.Message.Code
	}
	return 0
}

// Discord's JSON error codes the platform acts on.
const (
	codeUnknownChannel = 10003
	codeUnknownMessage = 10008
	codeThreadExists   = 160004
)

// ready refuses (as a rate limit) a call whose bucket is known to be
// empty, so it is not sent.
func (p *Platform) ready(method, path string) error {
	if d := p.lim.wait(routeKey(method, path)); d > 0 {
		return &bot.RateLimitedError{RetryAfter: d, Predicted: true}
	}
	return nil
}

// channel resolves "#name" (in the served guilds) or an id, and says what
// it is.
func (p *Platform) channel(ctx context.Context, ref string) (string, chanInfo, error) {
	id := ref
	if strings.HasPrefix(ref, "#") {
		var err error
		if id, err = p.channelByName(ctx, strings.TrimPrefix(ref, "#")); err != nil {
			return "", chanInfo{}, err
		}
	}
	p.mu.Lock()
	info, ok := p.chans[id]
	p.mu.Unlock()
	if ok {
		return id, info, nil
	}
	if st, found := p.stateChannel(id); found {
		info = st
	} else if err := p.ready("GET", "/channels/"+id); err != nil {
		return "", chanInfo{}, err
	} else if c, err := p.s.Channel(id, discordgo.WithContext(ctx)); err != nil {
		return "", chanInfo{}, fmt.Errorf("channel %s: %w", ref, convert(err))
	} else {
		info = chanInfo{guild: c.GuildID, thread: c.IsThread()}
	}
	p.mu.Lock()
	p.chans[id] = info
	p.mu.Unlock()
	return id, info, nil
}

// stateChannel reads a channel from discordgo's state cache. The gateway
// goroutine rewrites cached objects in place, so they are read under the
// state's lock and copied.
func (p *Platform) stateChannel(id string) (chanInfo, bool) {
	if p.s.State == nil {
		return chanInfo{}, false
	}
	p.s.State.RLock()
	defer p.s.State.RUnlock()
	for _, g := range p.s.State.Guilds {
		for _, c := range append(append([]*discordgo.Channel(nil), g.Channels...), g.Threads...) {
			if c.ID == id {
				return chanInfo{guild: c.GuildID, thread: c.IsThread()}, true
			}
		}
	}
	return chanInfo{}, false
}

// stateGuildChannels copies a guild's cached channels under the state's
// lock (see stateChannel).
func (p *Platform) stateGuildChannels(guild string) []*discordgo.Channel {
	if p.s.State == nil {
		return nil
	}
	p.s.State.RLock()
	defer p.s.State.RUnlock()
	for _, g := range p.s.State.Guilds {
		if g.ID != guild {
			continue
		}
		out := make([]*discordgo.Channel, 0, len(g.Channels))
		for _, c := range g.Channels {
			cp := *c
			out = append(out, &cp)
		}
		return out
	}
	return nil
}

// channelByName finds a text channel by name in the served guilds.
func (p *Platform) channelByName(ctx context.Context, name string) (string, error) {
	p.mu.Lock()
	id, ok := p.names[name]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	for _, g := range p.guilds() {
		chans := p.stateGuildChannels(g)
		if len(chans) == 0 {
			if err := p.ready("GET", "/guilds/"+g+"/channels"); err != nil {
				return "", err
			}
			var err error
			if chans, err = p.s.GuildChannels(g, discordgo.WithContext(ctx)); err != nil {
				return "", fmt.Errorf("listing the channels of guild %s: %w", g, convert(err))
			}
		}
		for _, c := range chans {
			if c.Name == name && !c.IsThread() && c.Type != discordgo.ChannelTypeGuildVoice && c.Type != discordgo.ChannelTypeGuildCategory {
				p.mu.Lock()
				p.names[name] = c.ID
				p.chans[c.ID] = chanInfo{guild: c.GuildID}
				p.mu.Unlock()
				return c.ID, nil
			}
		}
	}
	return "", fmt.Errorf("no channel #%s in the bot's guilds", name)
}

// guilds are the served guilds: configured, else those the gateway said.
func (p *Platform) guilds() []string {
	if len(p.cfg.Guilds) > 0 {
		return p.cfg.Guilds
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.guildIDs...)
}

func (p *Platform) setGuilds(ids []string) {
	p.mu.Lock()
	p.guildIDs = ids
	p.mu.Unlock()
}

// send posts a rendered message to a channel.
func (p *Platform) send(ctx context.Context, channel string, m bot.Message) (*discordgo.Message, error) {
	if err := p.ready("POST", "/channels/"+channel+"/messages"); err != nil {
		return nil, err
	}
	r := Render(m)
	msg, err := p.s.ChannelMessageSendComplex(channel, &discordgo.MessageSend{Content: r.Content, Embeds: r.Embeds,
		Components: r.Components, AllowedMentions: r.Mentions}, discordgo.WithContext(ctx))
	return msg, convert(err)
}

// Post sends a message; with thread set (the id of the message the thread
// starts from) it goes in that message's thread, which is started when it
// does not exist yet. In a channel that is itself a thread, replies stay
// in it.
func (p *Platform) Post(ctx context.Context, conversation, thread string, m bot.Message) (bot.MessageRef, error) {
	ch, info, err := p.channel(ctx, conversation)
	if err != nil {
		return bot.MessageRef{}, err
	}
	target := ch
	if thread != "" && thread != ch && !info.thread {
		if err := p.ensureThread(ctx, ch, info.guild, thread); err != nil {
			return bot.MessageRef{}, err
		}
		target = thread
	}
	msg, err := p.send(ctx, target, m)
	if err != nil {
		return bot.MessageRef{}, err
	}
	p.mu.Lock()
	if target == ch && !info.thread {
		p.titles[msg.ID] = threadName(m)
	}
	p.mu.Unlock()
	return bot.MessageRef{Conversation: target, ID: msg.ID}, nil
}

// ensureThread starts the public thread of message msg in channel ch
// unless it exists.
func (p *Platform) ensureThread(ctx context.Context, ch, guild, msg string) error {
	p.mu.Lock()
	known, name := p.threads[msg], p.titles[msg]
	p.mu.Unlock()
	if known {
		return nil
	}
	// Both the thread and the first reply must fit their buckets.
	if err := p.ready("POST", "/channels/"+ch+"/messages/"+msg+"/threads"); err != nil {
		return err
	}
	if err := p.ready("POST", "/channels/"+msg+"/messages"); err != nil {
		return err
	}
	if name == "" {
		name = p.nameFromMessage(ctx, ch, msg)
	}
	_, err := p.s.MessageThreadStartComplex(ch, msg, &discordgo.ThreadStart{Name: name, AutoArchiveDuration: 1440},
		discordgo.WithContext(ctx))
	if err != nil && restCode(err) != codeThreadExists {
		return fmt.Errorf("starting a thread: %w", convert(err))
	}
	p.mu.Lock()
	p.threads[msg] = true
	p.chans[msg] = chanInfo{guild: guild, thread: true}
	p.mu.Unlock()
	return nil
}

// nameFromMessage names a thread after a message someone else posted (an
// alert): its embed title, else its first line.
func (p *Platform) nameFromMessage(ctx context.Context, ch, msg string) string {
	if p.ready("GET", "/channels/"+ch+"/messages/"+msg) == nil {
		if m, err := p.s.ChannelMessage(ch, msg, discordgo.WithContext(ctx)); err == nil {
			for _, e := range m.Embeds {
				if t := strings.TrimSpace(e.Title); t != "" {
					return clip(t, maxThreadName)
				}
			}
			if line, _, _ := strings.Cut(strings.TrimSpace(m.Content), "\n"); line != "" {
				return clip(line, maxThreadName)
			}
		}
	}
	return "runbook"
}

// Update edits a message the bot posted.
func (p *Platform) Update(ctx context.Context, ref bot.MessageRef, m bot.Message) error {
	ch, _, err := p.channel(ctx, ref.Conversation)
	if err != nil {
		return err
	}
	if err := p.ready("PATCH", "/channels/"+ch+"/messages/"+ref.ID); err != nil {
		return err
	}
	r := Render(m)
	embeds := r.Embeds
	if embeds == nil {
		embeds = []*discordgo.MessageEmbed{}
	}
	comps := r.Components
	if comps == nil {
		comps = []discordgo.MessageComponent{}
	}
	_, err = p.s.ChannelMessageEditComplex(&discordgo.MessageEdit{Channel: ch, ID: ref.ID, Content: &r.Content,
		Embeds: &embeds, Components: &comps, AllowedMentions: r.Mentions}, discordgo.WithContext(ctx))
	return convert(err)
}

// remember keeps a user's latest interaction for late ephemeral answers.
func (p *Platform) remember(user string, i *discordgo.Interaction) {
	p.mu.Lock()
	p.tokens[user] = tokenRef{i: i, when: time.Now()}
	p.mu.Unlock()
}

// tokenLife is how long an interaction token is used for follow-ups
// (Discord allows 15 minutes).
const tokenLife = 14 * time.Minute

// Whisper shows a message to one user: an ephemeral follow-up on their
// latest interaction while its token lives, else a direct message.
func (p *Platform) Whisper(ctx context.Context, _ string, user string, m bot.Message) error {
	user = strings.TrimPrefix(user, Name+":")
	p.mu.Lock()
	t, ok := p.tokens[user]
	dm := p.dms[user]
	p.mu.Unlock()
	r := Render(m)
	if ok && time.Since(t.when) < tokenLife {
		if err := p.ready("POST", "/webhooks/"+t.i.AppID+"/"+t.i.Token); err != nil {
			return err
		}
		_, err := p.s.FollowupMessageCreate(t.i, true, &discordgo.WebhookParams{Content: r.Content, Embeds: r.Embeds,
			AllowedMentions: r.Mentions, Flags: discordgo.MessageFlagsEphemeral}, discordgo.WithContext(ctx))
		if err == nil {
			return nil
		}
		p.log.Warn("discord: ephemeral follow-up failed; sending a direct message", "err", convert(err))
	}
	if dm == "" {
		if err := p.ready("POST", "/users/@me/channels"); err != nil {
			return err
		}
		c, err := p.s.UserChannelCreate(user, discordgo.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("opening a direct message: %w", convert(err))
		}
		dm = c.ID
		p.mu.Lock()
		p.dms[user] = dm
		p.chans[dm] = chanInfo{}
		p.mu.Unlock()
	}
	_, err := p.send(ctx, dm, m)
	return err
}

// Link returns a link that opens a message.
func (p *Platform) Link(ctx context.Context, ref bot.MessageRef) (string, error) {
	ch, info, err := p.channel(ctx, ref.Conversation)
	if err != nil {
		return "", err
	}
	guild := info.guild
	if guild == "" {
		guild = "@me" // a direct message
	}
	return p.web + "channels/" + guild + "/" + ch + "/" + ref.ID, nil
}

// Find looks for a message the bot posted whose key (its first block's id)
// is key, in thread (when set and started) or the channel's latest 100
// messages.
func (p *Platform) Find(ctx context.Context, conversation, thread, key string) (bot.MessageRef, error) {
	ch, _, err := p.channel(ctx, conversation)
	if err != nil {
		return bot.MessageRef{}, err
	}
	where := ch
	if thread != "" {
		where = thread
	}
	if err := p.ready("GET", "/channels/"+where+"/messages"); err != nil {
		return bot.MessageRef{}, err
	}
	msgs, err := p.s.ChannelMessages(where, 100, "", "", "", discordgo.WithContext(ctx))
	if err != nil {
		if c := restCode(err); c == codeUnknownChannel || c == codeUnknownMessage {
			return bot.MessageRef{}, bot.ErrNotFound
		}
		return bot.MessageRef{}, convert(err)
	}
	want := keyURL(key)
	p.mu.Lock()
	self := p.selfID
	p.mu.Unlock()
	for _, m := range msgs {
		if m.Author != nil && self != "" && m.Author.ID != self {
			continue
		}
		for _, e := range m.Embeds {
			if e.URL == want {
				return bot.MessageRef{Conversation: where, ID: m.ID}, nil
			}
		}
	}
	return bot.MessageRef{}, bot.ErrNotFound
}

// UserGroupMembers lists the members of a Discord role (by id, or by name)
// in the served guilds: the commands.Directory for rbac.yaml's
// discordRoles. Listing members needs the privileged Server Members
// intent enabled for the application.
func (p *Platform) UserGroupMembers(ctx context.Context, role string) ([]string, error) {
	role = strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(role, "<@&"), ">"), "@")
	var out []string
	found := false
	for _, g := range p.guilds() {
		id := role
		if !snowflake.MatchString(role) {
			if err := p.ready("GET", "/guilds/"+g+"/roles"); err != nil {
				return nil, err
			}
			roles, err := p.s.GuildRoles(g, discordgo.WithContext(ctx))
			if err != nil {
				return nil, fmt.Errorf("listing roles: %w", convert(err))
			}
			id = ""
			for _, r := range roles {
				if r.Name == role {
					id = r.ID
				}
			}
			if id == "" {
				continue
			}
		}
		found = true
		after := ""
		for {
			if err := p.ready("GET", "/guilds/"+g+"/members"); err != nil {
				return nil, err
			}
			ms, err := p.s.GuildMembers(g, after, 1000, discordgo.WithContext(ctx))
			if err != nil {
				return nil, fmt.Errorf("listing members (is the Server Members intent enabled?): %w", convert(err))
			}
			for _, m := range ms {
				if m.User == nil {
					continue
				}
				for _, r := range m.Roles {
					if r == id {
						out = append(out, m.User.ID)
					}
				}
				after = m.User.ID
			}
			if len(ms) < 1000 {
				break
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no role %q in the bot's guilds", role)
	}
	return out, nil
}
