package lab

import "stagehand/internal/store"

// Store returns the lab's store, for the api's authentication (tokens,
// users, sessions) and the daemon's first-start administrator: the
// directory of who is who lives in the same store as the lab.
func (s *Service) Store() store.Store { return s.store }
