package api

import (
	"errors"
	"fmt"
	"html"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
	"stagehand/internal/oidclogin"
	"stagehand/internal/store"
)

// The OpenID Connect sign-in's routes: OIDCLoginPath starts a login (the
// browser is sent to the issuer); the issuer sends it back to the path of
// the redirect URL, by default OIDCCallbackPath.
const (
	OIDCLoginPath    = "/auth/oidc/login"
	OIDCCallbackPath = "/auth/oidc/callback"
)

// oidcSessionPrefix starts the name of every session an OIDC login makes.
// The store keeps no "how" of a session, and only the daemon names
// sessions (token create makes API tokens), so the name is what tells the
// authenticator to mark the identity auth.ViaOIDC.
const oidcSessionPrefix = "oidc login from "

// isOIDCSession reports whether the session tk was made by an OIDC login.
func isOIDCSession(tk *store.Token) bool { return strings.HasPrefix(tk.Name, oidcSessionPrefix) }

// OIDCLogin is the OpenID Connect sign-in the API serves once
// Handler.ServeOIDC registers it. Its provider arrives when the daemon has
// discovered the issuer (Ready), which may be after the API serves: until
// then, and after a failed discovery (Failed), the login routes answer 503
// naming the issuer.
//
// Users are pre-registered by e-mail: a login whose verified e-mail names
// no Stagehand user, or a disabled one, is refused (403) and makes no
// session. The provider's group → role mapping is applied at each login
// (see applyGrants).
type OIDCLogin struct {
	issuer   string
	redirect *url.URL

	mu       sync.Mutex
	provider *oidclogin.Provider
	failure  error // the last discovery failure, while provider is nil
}

// NewOIDCLogin returns the sign-in through issuer, whose callback is the
// absolute redirectURL (the one registered at the issuer and given to the
// provider as Config.RedirectURL).
func NewOIDCLogin(issuer, redirectURL string) (*OIDCLogin, error) {
	u, err := url.Parse(redirectURL)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, errdefs.Invalid("oidc redirect URL %q: want an absolute URL", redirectURL)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	if u.Path == OIDCLoginPath {
		return nil, errdefs.Invalid("oidc redirect URL %q: its path is the login route's; use %s", redirectURL, OIDCCallbackPath)
	}
	return &OIDCLogin{issuer: issuer, redirect: u}, nil
}

// Ready makes logins go through p (discovered from the issuer).
func (o *OIDCLogin) Ready(p *oidclogin.Provider) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.provider, o.failure = p, nil
}

// Failed records why the issuer could not be discovered; the login routes
// say so until Ready.
func (o *OIDCLogin) Failed(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		o.failure = err
	}
}

// current returns the provider, or a 503 naming the issuer.
func (o *OIDCLogin) current() (*oidclogin.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.provider != nil:
		return o.provider, nil
	case o.failure != nil:
		return nil, errdefs.Unavailable("oidc sign-in is unavailable: issuer %q could not be reached (the daemon keeps trying): %v", o.issuer, o.failure)
	}
	return nil, errdefs.Unavailable("oidc sign-in is not ready: issuer %q is still being discovered; try again in a moment", o.issuer)
}

// ServeOIDC registers o's two public routes: GET OIDCLoginPath and GET
// the redirect URL's path. Call it before serving, at most once.
func (h *Handler) ServeOIDC(o *OIDCLogin) {
	oh := &oidcHandler{Handler: h, o: o, store: h.auth.store, now: time.Now}
	r := &router{mux: h.mux, serve: h.endpoint}
	r.public("GET "+OIDCLoginPath, oh.begin)
	r.public("GET "+o.redirect.Path, oh.finish)
	for _, ri := range r.routes {
		h.table = append(h.table, ri)
		h.public[ri.Pattern] = true
	}
}

// oidcHandler serves the OIDC sign-in's routes. It answers errors itself
// (a page for a browser, JSON for a script), so its endpoints return nil
// once they have written.
type oidcHandler struct {
	*Handler
	o     *OIDCLogin
	store store.Store
	now   func() time.Time
}

// begin starts a login: the flow cookie and a redirect to the issuer;
// ?next= names the page of this site to land on once signed in.
// The browser must have come under the redirect URL's host name, since the
// flow cookie is set for it; no redirect fixes that here, because behind a
// proxy that rewrites Host it would loop.
func (h *oidcHandler) begin(w http.ResponseWriter, r *http.Request) error {
	p, err := h.o.current()
	if err != nil {
		h.answerError(w, r, err)
		return nil
	}
	// The page to land on afterwards rides beside the flow, in a cookie
	// of the callback's path: only a path of this site is kept.
	if next := r.URL.Query().Get("next"); safeLanding(next) {
		http.SetCookie(w, &http.Cookie{Name: oidcNextCookie, Value: url.QueryEscape(next), Path: h.o.redirect.Path,
			MaxAge: int(oidclogin.FlowLifetime / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	}
	p.Begin(w, r)
	return nil
}

// oidcNextCookie carries the page a login started from to its callback.
const oidcNextCookie = "stagehand_oidc_next"

// safeLanding reports whether next is a path of this site (never another
// site's address: the callback must not become an open redirect).
func safeLanding(next string) bool {
	u, err := url.Parse(next)
	return err == nil && strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") &&
		!strings.Contains(next, "\\") && u.Scheme == "" && u.Host == "" && u.User == nil
}

// finish ends a login on the callback: the provider checks the flow and
// the ID token, the verified e-mail names the user, the group mapping
// grants its roles, and a session (auth.ViaOIDC) is set as the cookie.
// A browser then gets a page of this origin that goes on to the page the
// login started from (begin's ?next=, else "/"); a client that asked for
// JSON gets the session as the password login returns it.
func (h *oidcHandler) finish(w http.ResponseWriter, r *http.Request) error {
	p, err := h.o.current()
	if err != nil {
		h.answerError(w, r, err)
		return nil
	}
	claims, err := p.Finish(w, r)
	if err != nil {
		if errors.Is(err, oidclogin.ErrRefused) {
			h.log.Warn("oidc login refused", "issuer", h.o.issuer, "remote", remoteIP(r), "err", err)
		}
		h.answerError(w, r, err)
		return nil
	}
	if h.store == nil {
		h.answerError(w, r, errdefs.Unavailable("this server keeps no users"))
		return nil
	}
	u, err := h.signIn(r, claims, p.Roles(claims))
	if err != nil {
		h.answerError(w, r, err)
		return nil
	}
	addr := remoteIP(r)
	plain, tk, err := startSession(w, r, h.store, u, oidcSessionPrefix+addr, h.now())
	if err != nil {
		h.answerError(w, r, fmt.Errorf("oidc login of %q: %w", u.Name, err))
		return nil
	}
	h.log.Info("login", "user", u.Name, "session", tk.ID, "remote", addr, "via", auth.ViaOIDC,
		"issuer", claims.Issuer, "subject", claims.Subject)
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, wire.LoginResponse{User: u.Name, Token: plain, ExpiresAt: tk.ExpiresAt})
	}
	// Not a redirect: this navigation began at the issuer's site, so a
	// redirect from here is still cross-site and the browser would not
	// send the SameSite=Strict session cookie with it, landing the user
	// on the sign-in page again. A page of this origin that navigates
	// on makes a same-site request, which carries the cookie.
	next := "/"
	if c, err := r.Cookie(oidcNextCookie); err == nil {
		if v, err := url.QueryUnescape(c.Value); err == nil && safeLanding(v) {
			next = v
		}
	}
	http.SetCookie(w, &http.Cookie{Name: oidcNextCookie, Value: "", Path: h.o.redirect.Path, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.WriteHeader(http.StatusOK)
	next = html.EscapeString(next)
	fmt.Fprintf(w, "<!doctype html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url=%s\">\n"+
		"<title>Stagehand: signed in</title>\n<p>Signed in as %s. <a href=\"%s\">Continue</a></p>\n",
		next, html.EscapeString(u.Name), next)
	return nil
}

// signIn returns the enabled user whose e-mail claims proves, after
// putting the memberships grants give them, in one transaction.
func (h *oidcHandler) signIn(r *http.Request, claims oidclogin.Claims, grants []oidclogin.RoleGrant) (*store.User, error) {
	var u *store.User
	var applied []string
	err := h.store.Update(r.Context(), func(tx store.Tx) error {
		var err error
		u, err = tx.Users().GetByEmail(claims.Email)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.Forbidden("oidc login refused: the e-mail %q is not registered with Stagehand (users are registered by e-mail beforehand: ask an administrator to run stagehand user create --email)", claims.Email)
		}
		if err != nil {
			return fmt.Errorf("oidc login of %q: %w", claims.Email, err)
		}
		if u.Disabled {
			return errdefs.Forbidden("oidc login refused: the user %q of the e-mail %q is disabled", u.Name, claims.Email)
		}
		applied, err = h.applyGrants(tx, u, grants)
		return err
	})
	if err != nil {
		if errdefs.Kind(err) == errdefs.ErrForbidden {
			h.log.Warn("oidc login refused", "email", claims.Email, "issuer", claims.Issuer, "subject", claims.Subject, "err", err)
		}
		return nil, err
	}
	if len(applied) > 0 {
		h.log.Info("oidc group roles applied", "user", u.Name, "groups", claims.Groups, "memberships", applied)
	}
	return u, nil
}

// applyGrants puts u's membership of each workspace the grants name with
// the strongest role they give there, and returns what it changed
// ("ws:role", "ws:old→new").
//
// The mapping adds and updates; it never removes. The store cannot tell a
// membership the mapping made from one an administrator made, and
// removing the second because a group no longer names it would undo an
// administrator's decision; so to take a workspace away from a user who
// left a group, an administrator removes the membership (or disables the
// user). An update does lower a role when the groups now give less: the
// mapped workspaces' roles are the issuer's to decide.
//
// A grant naming a workspace that does not exist (or a role that is no
// longer one: the daemon checked them at start) is skipped and logged at
// ERROR, so that one stale mapping does not lock every user out.
func (h *oidcHandler) applyGrants(tx store.Tx, u *store.User, grants []oidclogin.RoleGrant) ([]string, error) {
	type pick struct {
		ws   *store.Workspace
		name string
		role auth.Role
	}
	best := map[int64]pick{}
	var order []int64
	for _, g := range grants {
		role, err := auth.ParseRole(g.Role)
		if err != nil {
			h.log.Error("oidc group role skipped", "user", u.Name, "workspace", g.Workspace, "err", err)
			continue
		}
		ws, err := access.ResolveWorkspace(tx, 0, g.Workspace)
		if errors.Is(err, errdefs.ErrNotFound) {
			h.log.Error("oidc group role skipped: no such workspace", "user", u.Name, "workspace", g.Workspace, "role", role)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("oidc grant %s:%s to %q: %w", g.Workspace, g.Role, u.Name, err)
		}
		cur, seen := best[ws.ID]
		if !seen {
			order = append(order, ws.ID)
		}
		if !seen || roleRank(role) < roleRank(cur.role) {
			best[ws.ID] = pick{ws: ws, name: g.Workspace, role: role}
		}
	}
	var applied []string
	for _, id := range order {
		b := best[id]
		old, err := tx.Memberships().Get(u.ID, id)
		switch {
		case err == nil && old.Role == string(b.role):
			continue
		case err == nil:
			applied = append(applied, fmt.Sprintf("%s:%s→%s", b.name, old.Role, b.role))
		case errors.Is(err, errdefs.ErrNotFound):
			applied = append(applied, fmt.Sprintf("%s:%s", b.name, b.role))
		default:
			return nil, fmt.Errorf("oidc grant %s:%s to %q: %w", b.name, b.role, u.Name, err)
		}
		if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: id, Role: string(b.role)}); err != nil {
			return nil, fmt.Errorf("oidc grant %s:%s to %q: %w", b.name, b.role, u.Name, err)
		}
	}
	return applied, nil
}

// roleRank orders roles strongest first (auth.Roles).
func roleRank(r auth.Role) int {
	for i, x := range auth.Roles() {
		if x == r {
			return i
		}
	}
	return len(auth.Roles())
}

// wantsJSON reports whether the client asked for JSON rather than a page.
func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
			return true
		}
	}
	return false
}

// answerError answers err with its status: the JSON error body for a
// client that asked for JSON, else a short page a person can read (a
// browser lands on these routes, not a program).
func (h *oidcHandler) answerError(w http.ResponseWriter, r *http.Request, err error) {
	if wantsJSON(r) {
		h.writeError(w, r, err)
		return
	}
	status, _ := statusOf(r, err)
	if status == http.StatusInternalServerError {
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Stagehand: sign-in failed</title>\n"+
		"<h1>Sign-in failed</h1>\n<p>%s</p>\n<p><a href=\"%s\">Sign in again</a></p>\n",
		html.EscapeString(err.Error()), OIDCLoginPath)
}
