package apitest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/auth"
	"stagehand/internal/store"
)

// Root is the identity Serve gives requests that carry no credentials:
// the system administrator, as the unix peer root is. Tests written
// before authentication keep driving the API without logging in.
var Root = auth.Identity{Name: "root", SystemAdmin: true, Via: auth.ViaUnixPeer}

// ServeStrict serves the API over l as the daemon does: a request without
// credentials is answered 401. Tests of authentication and authorization
// use it, with tokens from Token.
func ServeStrict(tb testing.TB, l Served) (*httptest.Server, *api.Handler) {
	tb.Helper()
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	tb.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	return srv, h
}

// TokenOptions shape a token made by Token.
type TokenOptions struct {
	Expires   time.Time // zero: never
	Revoked   bool
	Workspace int64  // restrict to this workspace (0: none)
	Role      string // restrict to at most this role
	Session   bool   // a session (shs_…) rather than an API token
}

// User returns the user named name, creating it (no password) when it
// does not exist.
func (l *Lab) User(tb testing.TB, name string, systemAdmin bool) *store.User {
	tb.Helper()
	var u *store.User
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		var err error
		if u, err = tx.Users().Get(name); err == nil {
			return nil
		}
		u = &store.User{Name: name, SystemAdmin: systemAdmin}
		return tx.Users().Create(u)
	})
	if err != nil {
		tb.Fatalf("user %s: %v", name, err)
	}
	return u
}

// Token makes a token for user (created if need be) and returns its
// plaintext, to send as Authorization: Bearer.
func (l *Lab) Token(tb testing.TB, user string, o TokenOptions) string {
	tb.Helper()
	u := l.User(tb, user, false)
	plain, id, hash := auth.NewToken()
	kind := store.TokenAPI
	if o.Session {
		plain, id, hash = auth.NewSessionToken()
		kind = store.TokenSession
	}
	tk := &store.Token{ID: id, UserID: u.ID, Hash: hash, Kind: kind, Name: "test", ExpiresAt: o.Expires,
		RestrictWorkspaceID: o.Workspace, RestrictRole: o.Role}
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Tokens().Create(tk); err != nil {
			return err
		}
		if o.Revoked {
			return tx.Tokens().Revoke(id, time.Now())
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("token of %s: %v", user, err)
	}
	return plain
}

// AdminToken returns a token of a system administrator user ("admin").
func (l *Lab) AdminToken(tb testing.TB) string {
	tb.Helper()
	l.User(tb, "admin", true)
	return l.Token(tb, "admin", TokenOptions{})
}
