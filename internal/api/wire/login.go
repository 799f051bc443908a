package wire

import "time"

// LoginRequest is POST /login's body: a user name and password.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// LoginResponse is a login's answer: the session, also set as the cookie
// stagehand_session; the CLI keeps Token and sends it as a bearer token.
type LoginResponse struct {
	User      string    `json:"user"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}
