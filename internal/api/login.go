package api

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// SessionLifetime is how long a password login's session lasts.
const SessionLifetime = 12 * time.Hour

// maxPasswordChecks caps the password checks running at once: each costs
// tens of milliseconds of CPU and 64 MiB (argon2id), so a flood of logins
// must queue rather than take the daemon's memory.
const maxPasswordChecks = 4

// loginHandler serves POST /login and /logout: password logins make
// session tokens (store kind session), set as a cookie and returned for
// the CLI.
type loginHandler struct {
	*env
	store    store.Store
	throttle *auth.Throttle
	checks   chan struct{} // a slot per password check running
	now      func() time.Time

	dummyOnce sync.Once
	dummy     string // a hash to check against when the user does not exist
}

func newLoginHandler(e *env, st store.Store) *loginHandler {
	return &loginHandler{env: e, store: st, throttle: auth.NewThrottle(nil),
		checks: make(chan struct{}, maxPasswordChecks), now: time.Now}
}

func (h *loginHandler) register(r *router) {
	r.public("POST "+wire.APIPrefix+"/login", h.login)
	r.public("POST "+wire.APIPrefix+"/logout", h.logout)
}

// errBadLogin is the one answer to a wrong user, a wrong password, a user
// without a password and a disabled user: a caller learns nothing of
// which user names exist.
var errBadLogin = errdefs.Unauthenticated("login refused: wrong user name or password")

func (h *loginHandler) login(w http.ResponseWriter, r *http.Request) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return errMalformed("login takes a JSON body (Content-Type: application/json), not %q", r.Header.Get("Content-Type"))
	}
	var req wire.LoginRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	user := strings.TrimSpace(req.User)
	if user == "" || req.Password == "" {
		return errMalformed("login needs a user and a password")
	}
	if h.store == nil {
		return errdefs.Unavailable("this server keeps no users")
	}
	addr := remoteIP(r)
	if wait := h.throttle.Check(user, addr); wait > 0 {
		return tooManyAttempts(w, wait)
	}
	select {
	case h.checks <- struct{}{}:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	u, err := h.checkPassword(r, user, req.Password)
	<-h.checks
	if err != nil {
		if errors.Is(err, errBadLogin) {
			if wait := h.throttle.Fail(user, addr); wait > 0 {
				h.log.Warn("login throttled", "user", user, "remote", addr, "for", wait)
			}
		}
		return err
	}
	h.throttle.Succeed(user, addr)

	plain, tk, err := startSession(w, r, h.store, u, "login from "+addr, h.now())
	if err != nil {
		return fmt.Errorf("login of %q: %w", u.Name, err)
	}
	h.log.Info("login", "user", u.Name, "session", tk.ID, "remote", addr)
	return writeJSON(w, http.StatusOK, wire.LoginResponse{User: u.Name, Token: plain, ExpiresAt: tk.ExpiresAt})
}

// startSession makes a session token for u (store kind session, named
// name, lasting SessionLifetime from now), sets it as the session cookie
// and returns its plaintext. The password login and the OIDC login both
// end here, so their sessions are alike.
func startSession(w http.ResponseWriter, r *http.Request, st store.Store, u *store.User, name string, now time.Time) (plain string, tk *store.Token, err error) {
	plain, id, hash := auth.NewSessionToken()
	tk = &store.Token{ID: id, UserID: u.ID, Hash: hash, Kind: store.TokenSession,
		Name: name, ExpiresAt: now.Add(SessionLifetime)}
	if err := st.Update(r.Context(), func(tx store.Tx) error { return tx.Tokens().Create(tk) }); err != nil {
		return "", nil, fmt.Errorf("create session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: plain, Path: "/",
		Expires: tk.ExpiresAt, MaxAge: int(SessionLifetime / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	w.Header().Set("Cache-Control", "no-store")
	return plain, tk, nil
}

// checkPassword returns the user named user when password is theirs. A
// user that does not exist costs the same check, against a dummy hash.
func (h *loginHandler) checkPassword(r *http.Request, user, password string) (*store.User, error) {
	var u *store.User
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		var err error
		u, err = tx.Users().Get(user)
		return err
	})
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("login of %q: %w", user, err)
	}
	hash := ""
	if u != nil {
		hash = u.PasswordHash
	}
	if hash == "" {
		h.dummyOnce.Do(func() { h.dummy, _ = auth.HashPassword("no user has this password") })
		_ = auth.CheckPassword(h.dummy, password)
		return nil, errBadLogin
	}
	if auth.CheckPassword(hash, password) != nil || u.Disabled {
		return nil, errBadLogin
	}
	return u, nil
}

// tooManyAttempts answers 429 with Retry-After.
func tooManyAttempts(w http.ResponseWriter, wait time.Duration) error {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return writeJSON(w, http.StatusTooManyRequests, wire.Error{
		Error: fmt.Sprintf("too many failed logins for this user from this address: try again in %s", time.Duration(secs)*time.Second),
		Kind:  wire.KindUnavailable,
	})
}

// logout revokes the session the request was authenticated with (cookie
// or bearer shs_…) and clears the cookie.
func (h *loginHandler) logout(w http.ResponseWriter, r *http.Request) error {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		return errdefs.Unauthenticated("logout: no session was sent (or it has already ended)")
	}
	if id.Via != auth.ViaSession && id.Via != auth.ViaOIDC {
		return errMalformed("logout ends a login session; this request was authenticated by %s (revoke API tokens with stagehand token revoke)", id.Via)
	}
	if err := h.store.Update(r.Context(), func(tx store.Tx) error { return tx.Tokens().Revoke(id.TokenID, h.now()) }); err != nil {
		return fmt.Errorf("logout of %q: %w", id.Name, err)
	}
	h.log.Info("logout", "user", id.Name, "session", id.TokenID)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// remoteIP is the address a login is throttled by: the peer's IP without
// its port, or the unix peer as the socket listener names it.
func remoteIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
