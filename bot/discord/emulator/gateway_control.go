package emulator

// Connected reports whether a bot session is connected and identified.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.gw.sessions {
		if sess.conn != nil {
			return true
		}
	}
	return false
}

// Identifies returns every IDENTIFY received, oldest first.
func (s *Server) Identifies() []Identify {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Identify(nil), s.gw.identifies...)
}

// Resumes returns how many RESUMEs succeeded.
func (s *Server) Resumes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw.resumes
}

// GatewayDials returns how many WebSocket connections were opened.
func (s *Server) GatewayDials() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw.dials
}

// Replayed returns how many dispatches RESUMEs replayed in total.
func (s *Server) Replayed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw.replayed
}

// HoldConnections(true) makes new gateway connections wait for their HELLO
// (the client's Open blocks) until HoldConnections(false), so a test can
// act while the bot is certainly disconnected.
func (s *Server) HoldConnections(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gw.hold = hold
	if !hold {
		for _, c := range s.gw.held {
			if s.gw.conns[c] {
				s.helloLocked(c)
			}
		}
		s.gw.held = nil
	}
}

// Heartbeats returns how many heartbeats (op 1) the clients sent.
func (s *Server) Heartbeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw.heartbeats
}

// SetHeartbeatAcks turns heartbeat ACKs (op 11) on or off, to simulate a
// zombie connection.
func (s *Server) SetHeartbeatAcks(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gw.noAcks = !on
}

// Reconnect sends op 7 (Reconnect) on every connection; the client should
// reconnect and RESUME.
func (s *Server) Reconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.gw.conns {
		s.sendLocked(c, outItem{data: []byte(`{"op":7,"d":null,"s":null,"t":null}`)})
	}
}

// InvalidateSession sends op 9 (Invalid Session) with d=resumable on every
// connection. A non-resumable invalidation forgets the sessions; the client
// must IDENTIFY again (discordgo does so on the same socket).
func (s *Server) InvalidateSession(resumable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := `{"op":9,"d":false,"s":null,"t":null}`
	if resumable {
		msg = `{"op":9,"d":true,"s":null,"t":null}`
	}
	for c := range s.gw.conns {
		if c.sess != nil {
			c.sess.conn = nil
			if !resumable {
				delete(s.gw.sessions, c.sess.id)
			}
			c.sess = nil
		}
		s.sendLocked(c, outItem{data: []byte(msg)})
	}
}

// CloseGateway closes every connection with a close code (e.g.
// CloseDisallowedIntents). Codes after which Discord does not allow a
// RESUME (4007, 4009) also forget the sessions.
func (s *Server) CloseGateway(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.gw.conns {
		if c.sess != nil && (code == CloseInvalidSeq || code == CloseSessionTimedOut) {
			delete(s.gw.sessions, c.sess.id)
		}
		s.closeConnLocked(c, code)
	}
}

// DropConnections cuts every gateway connection without a close frame,
// as a network failure would. Sessions stay resumable.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]*gwConn, 0, len(s.gw.conns))
	for c := range s.gw.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}
