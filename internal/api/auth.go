package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/peer"
	"stagehand/internal/store"
)

// SessionCookie is the cookie a password login sets: a session token
// (shs_…), HttpOnly, SameSite=Strict, Secure over TLS.
const SessionCookie = "stagehand_session"

// touchEvery bounds how often a token's last use is written: at most once
// a minute per token, not once a request.
const touchEvery = time.Minute

// authenticator establishes who a request is: the unix peer root, or the
// user of a bearer token or session cookie. It reads the store once per
// request (one read transaction) and writes only the tokens' last use.
type authenticator struct {
	store store.Store // nil: only the unix peer root is known
	now   func() time.Time

	mu      sync.Mutex
	touched map[string]time.Time // token id → when its last use was written

	// anonymous is who a request without any credentials is; nil: nobody
	// (the daemon). See Handler.TrustRequestsWithoutCredentials.
	anonymous *auth.Identity

	// hosts verifies peers' host credentials (forward.go); nil: none is
	// accepted.
	hosts hostlink.Verifier
}

func newAuthenticator(st store.Store) *authenticator {
	return &authenticator{store: st, now: time.Now, touched: map[string]time.Time{}}
}

// errNoCredentials answers a request that carries none on a route that
// needs them.
var errNoCredentials = errdefs.Unauthenticated("authentication required: send an API token (Authorization: Bearer sht_…), log in (stagehand login), or use the daemon's unix socket as root")

// authenticate returns the identity of r. ok is false when r carries no
// credentials at all; err is set when it carries credentials that are not
// good (malformed, unknown, revoked, expired, of a disabled user), named
// without echoing the secret.
func (a *authenticator) authenticate(r *http.Request) (id auth.Identity, ok bool, err error) {
	if cred, isPeer := peer.FromContext(r.Context()); isPeer && cred.UID == 0 {
		return auth.Identity{Name: "root", SystemAdmin: true, Via: auth.ViaUnixPeer}, true, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return auth.Identity{}, false, errdefs.Unauthenticated("the Authorization header is not \"Bearer TOKEN\"")
		}
		tok = strings.TrimSpace(tok)
		if strings.HasPrefix(tok, auth.SessionTokenPrefix) {
			// The CLI keeps the session of `stagehand login` and sends it
			// as a bearer token.
			return a.verify(r.Context(), tok, store.TokenSession)
		}
		return a.verify(r.Context(), tok, store.TokenAPI)
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		return a.verify(r.Context(), c.Value, store.TokenSession)
	}
	if a.anonymous != nil {
		return *a.anonymous, true, nil
	}
	return auth.Identity{}, false, nil
}

// verify checks a token of kind against the store.
func (a *authenticator) verify(ctx context.Context, plaintext, kind string) (auth.Identity, bool, error) {
	parse, what, via := auth.ParseToken, "API token", auth.ViaToken
	if kind == store.TokenSession {
		parse, what, via = auth.ParseSessionToken, "session", auth.ViaSession
	}
	tokID, secret, err := parse(plaintext)
	if err != nil {
		return auth.Identity{}, false, err
	}
	if a.store == nil {
		return auth.Identity{}, false, errdefs.Unauthenticated("%s %s: this server keeps no tokens", what, tokID)
	}
	now := a.now()
	var id auth.Identity
	err = a.store.View(ctx, func(tx store.Tx) error {
		tk, err := tx.Tokens().Get(tokID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.Unauthenticated("%s %s is unknown", what, tokID)
		}
		if err != nil {
			return err
		}
		switch {
		case tk.Kind != kind || !auth.VerifyToken(tk.Hash, secret):
			// One message for both: the caller learns nothing of which
			// part was wrong.
			return errdefs.Unauthenticated("%s %s: wrong secret", what, tokID)
		case !tk.RevokedAt.IsZero():
			return errdefs.Unauthenticated("%s %s was revoked on %s", what, tokID, tk.RevokedAt.UTC().Format(time.RFC3339))
		case !tk.ExpiresAt.IsZero() && !now.Before(tk.ExpiresAt):
			return errdefs.Unauthenticated("%s %s expired on %s", what, tokID, tk.ExpiresAt.UTC().Format(time.RFC3339))
		}
		u, err := tx.Users().GetByID(tk.UserID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.Unauthenticated("%s %s: its user no longer exists", what, tokID)
		}
		if err != nil {
			return err
		}
		if u.Disabled {
			return errdefs.Unauthenticated("%s %s: user %q is disabled", what, tokID, u.Name)
		}
		id = auth.Identity{UserID: u.ID, Name: u.Name, SystemAdmin: u.SystemAdmin, Via: via, TokenID: tk.ID}
		if kind == store.TokenSession && isOIDCSession(tk) {
			id.Via = auth.ViaOIDC
		}
		if tk.RestrictWorkspaceID != 0 || tk.RestrictRole != "" {
			role := auth.Role(tk.RestrictRole)
			if role == "" {
				role = auth.RoleAdmin // only the workspace: the user's own role there
			}
			// A role without a workspace keeps WorkspaceID 0, which
			// Decide reads as "no workspace at all": it fails closed.
			id.Restrict = &auth.Restriction{WorkspaceID: tk.RestrictWorkspaceID, MaxRole: role}
		}
		return nil
	})
	if err != nil {
		if errdefs.Kind(err) == errdefs.ErrUnauthenticated {
			return auth.Identity{}, false, err
		}
		return auth.Identity{}, false, fmt.Errorf("%s %s: %w", what, tokID, err)
	}
	a.touch(ctx, tokID, now)
	return id, true, nil
}

// touch records a token's use, at most once per touchEvery per token. A
// failure is not the request's: it is only a last-use time.
func (a *authenticator) touch(ctx context.Context, tokID string, now time.Time) {
	a.mu.Lock()
	last, seen := a.touched[tokID]
	due := !seen || now.Sub(last) >= touchEvery
	if due {
		a.touched[tokID] = now
		if len(a.touched) > 10_000 {
			for k, t := range a.touched {
				if now.Sub(t) >= touchEvery {
					delete(a.touched, k)
				}
			}
		}
	}
	a.mu.Unlock()
	if !due {
		return
	}
	_ = a.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error { return tx.Tokens().Touch(tokID, now) })
}

// authenticate is the middleware that puts the request's identity into
// its context (auth.WithIdentity). A request to a route that is not
// public is answered 401 here, before its body is read, when it carries
// no credentials or bad ones; on a public route bad credentials are
// ignored (a stale cookie must not stop a login).
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if presentsHostCredential(r) { // forward.go
			fr, id, err := h.auth.hostIdentity(r)
			if err != nil {
				h.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, fr.WithContext(auth.WithIdentity(fr.Context(), id)))
			return
		}
		if r.Header.Get(ActingUserHeader) != "" || r.Header.Get(ActingRestrictionHeader) != "" {
			h.writeError(w, r, errActingForged)
			return
		}
		if hasConsoleLink(r) { // console_links.go
			linked, err := h.consoleLinkRequest(r)
			if err != nil {
				h.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, linked)
			return
		}
		id, ok, err := h.auth.authenticate(r)
		if ok {
			r = r.WithContext(auth.WithIdentity(r.Context(), id))
			next.ServeHTTP(w, r)
			return
		}
		if h.isPublic(r) {
			next.ServeHTTP(w, r)
			return
		}
		if err == nil {
			err = errNoCredentials
		}
		h.writeError(w, r, err)
	})
}

// isPublic reports whether r is for a route served without credentials.
func (h *Handler) isPublic(r *http.Request) bool {
	_, pattern := h.mux.Handler(r)
	return h.public[pattern]
}

// TrustRequestsWithoutCredentials makes every request that carries no
// credentials act as id. It exists for the tests of the layers above the
// api (apitest), which drive the API without logging in; the daemon never
// calls it. Requests with credentials are authenticated as always.
func (h *Handler) TrustRequestsWithoutCredentials(id auth.Identity) {
	h.auth.anonymous = &id
}

// authorize decides whether the identity of r may do ri's action: on the
// object the path names, the configuration the body names (a capture, an
// archive), the workspace a create or a list names, or the system. Lists
// without a workspace pass: the lab filters them for the caller.
func (h *Handler) authorize(r *http.Request, ri RouteInfo) error {
	if scope, ok := consoleLinkScopeOf(r.Context()); ok {
		// A console link reaches its VM's consoles only (console_links.go);
		// there its creator's rights are checked below as usual.
		if err := h.authorizeConsoleLink(r, ri, scope); err != nil {
			return err
		}
	}
	if ri.Public {
		return nil
	}
	if _, ok := auth.FromContext(r.Context()); !ok {
		return errNoCredentials // the middleware lets none through; never trust that alone
	}
	if h.access == nil {
		return errdefs.Unavailable("authorization is not configured on this server")
	}
	ref, check, err := refOf(r, ri)
	if err != nil || !check {
		return err
	}
	return h.access.Check(r.Context(), ri.Action, ref)
}
