package client

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"

	"stagehand/internal/api/wire"
)

// Login checks user's password and returns a session token (shs_…) to
// send as a bearer token (WithToken) until it expires or Logout. A wrong
// user or password is errdefs.ErrUnauthenticated; too many failed tries
// from this address is errdefs.ErrUnavailable naming the wait.
func (c Auth) Login(ctx context.Context, user, password string) (string, error) {
	resp, err := call[wire.LoginResponse](ctx, c.t, http.MethodPost, path("login"), nil, wire.LoginRequest{User: user, Password: password})
	if err != nil {
		return "", err
	}
	return resp.Token, nil
}

// Logout ends the session the client sends (WithToken of a Login's
// token): the daemon revokes it.
func (c Auth) Logout(ctx context.Context) error {
	return c.t.do(ctx, http.MethodPost, path("logout"), nil, nil, nil)
}

// TokenFile is where `stagehand login` keeps its session:
// $XDG_CONFIG_HOME/stagehand/token, else ~/.config/stagehand/token.
func TokenFile(getenv func(string) string) (string, error) {
	known, err := KnownServersFile(getenv)
	if err != nil {
		return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set: nowhere to keep the login's token")
	}
	return filepath.Join(filepath.Dir(known), "token"), nil
}

// Explain says whether a user may do an action to an object ("kind/name")
// and which row decided.
func (c Auth) Explain(ctx context.Context, req wire.ExplainRequest) (*wire.Explanation, error) {
	return call[wire.Explanation](ctx, c.t, http.MethodPost, path("auth", "explain"), nil, req)
}
