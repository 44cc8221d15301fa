package emulator

import "net/http"

func (s *Server) handleUIPage(w http.ResponseWriter, r *http.Request) {}
func (s *Server) handleUIAPI(w http.ResponseWriter, r *http.Request)  {}
