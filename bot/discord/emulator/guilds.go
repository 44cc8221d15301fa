package emulator

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
)

func (s *Server) getGateway(c *call) {
	c.ok(http.StatusOK, obj{"url": s.GatewayURL()})
}

func (s *Server) getGatewayBot(c *call) {
	c.ok(http.StatusOK, obj{
		"url": s.GatewayURL(), "shards": 1,
		"session_start_limit": obj{"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1},
	})
}

func (s *Server) getMe(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.wireUserLocked(s.opts.ApplicationID)
	u["verified"], u["mfa_enabled"], u["flags"], u["bio"] = true, false, 0, ""
	c.ok(http.StatusOK, u)
}

func (s *Server) getUser(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[c.p("user_id")] == nil {
		c.fail(errUnknownUser())
		return
	}
	c.ok(http.StatusOK, s.wireUserLocked(c.p("user_id")))
}

// createDM serves POST /users/@me/channels {"recipient_id"}.
func (s *Server) createDM(c *call) {
	var b struct {
		RecipientID string `json:"recipient_id"`
	}
	if !c.decode(&b) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[b.RecipientID]; u == nil || u.Bot {
		var f formErrors
		f.add("recipient_id", "USER_NOT_FOUND", "Unknown User")
		c.fail(f.err())
		return
	}
	c.ok(http.StatusOK, s.wireChannelLocked(s.dmLocked(b.RecipientID)))
}

func (c *call) guildLocked() *Guild {
	g := c.s.guilds[c.p("guild_id")]
	if g == nil {
		c.fail(errUnknownGuild())
	}
	return g
}

func (s *Server) getGuild(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := c.guildLocked(); g != nil {
		c.ok(http.StatusOK, s.wireGuildLocked(g))
	}
}

func (s *Server) getRoles(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := c.guildLocked(); g != nil {
		c.ok(http.StatusOK, s.wireRolesLocked(g.ID))
	}
}

func (s *Server) getGuildChannels(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := c.guildLocked()
	if g == nil {
		return
	}
	out := []obj{}
	for _, id := range s.chanOrder {
		if ch := s.channels[id]; ch.GuildID == g.ID && ch.ParentID == "" {
			out = append(out, s.wireChannelLocked(ch))
		}
	}
	c.ok(http.StatusOK, out)
}

// listMembers serves GET /guilds/{g}/members?limit&after. Discord requires
// the privileged GUILD_MEMBERS intent to be enabled for this.
func (s *Server) listMembers(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := c.guildLocked()
	if g == nil {
		return
	}
	if s.opts.DeniedIntents&IntentGuildMembers != 0 {
		c.fail(errMissingAccess())
		return
	}
	limit := 1
	if l := c.query.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			var f formErrors
			f.add("limit", "NUMBER_TYPE_MAX", "int value should be less than or equal to 1000.")
			c.fail(f.err())
			return
		}
		limit = n
	}
	after := idNum(c.query.Get("after"))
	out := []obj{}
	for _, id := range sortedIDs(s.userOrder) {
		if idNum(id) > after && len(out) < limit {
			out = append(out, s.wireMemberLocked(g.ID, id, true))
		}
	}
	c.ok(http.StatusOK, out)
}

func (s *Server) getMember(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := c.guildLocked()
	if g == nil {
		return
	}
	if s.users[c.p("user_id")] == nil {
		c.fail(errUnknownMember())
		return
	}
	c.ok(http.StatusOK, s.wireMemberLocked(g.ID, c.p("user_id"), true))
}

// sortedIDs returns snowflakes in numeric order.
func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(idNum(a), idNum(b)) })
	return out
}
