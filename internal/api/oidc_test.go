package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/oidclogin"
	"stagehand/internal/oidclogin/oidctest"
	"stagehand/internal/store"
)

const (
	oidcClientID     = "stagehand-api-test"
	oidcClientSecret = "api test secret"
)

// oidcRig is the real API (strict: no credentials, no access) over a real
// lab on a temporary SQLite store, with OIDC sign-in through a real
// in-process issuer, and a browser: a client with a cookie jar that
// follows redirects.
type oidcRig struct {
	l      *apitest.Lab
	srv    *httptest.Server
	issuer *oidctest.Issuer
	login  *api.OIDCLogin
	jar    *cookiejar.Jar
}

var oidcAlice = oidctest.User{
	Subject: "alice-1", Email: "alice@example.test", EmailVerified: true, Name: "Alice",
	Groups: []string{"lab-admins", "devs", "qa", "unmapped", "ghosts"},
}

// oidcGroupRoles maps alice's groups: two to the workspace team (the
// stronger must win), one to a workspace that does not exist.
var oidcGroupRoles = map[string]oidclogin.RoleGrant{
	"lab-admins": {Workspace: "main", Role: "admin"},
	"devs":       {Workspace: "team", Role: "author"},
	"qa":         {Workspace: "default/team", Role: "viewer"},
	"ghosts":     {Workspace: "nope", Role: "admin"},
}

// newOIDCRig serves the API and registers the OIDC routes; ready says
// whether the provider is discovered now (else the test decides).
func newOIDCRig(t *testing.T, ready bool) *oidcRig {
	t.Helper()
	l := apitest.New(t)
	srv, h := apitest.ServeStrict(t, l)
	rig := &oidcRig{l: l, srv: srv,
		issuer: oidctest.Start(t, oidctest.Options{ClientID: oidcClientID, ClientSecret: oidcClientSecret, User: oidcAlice})}
	var err error
	rig.login, err = api.NewOIDCLogin(rig.issuer.URL, srv.URL+api.OIDCCallbackPath)
	if err != nil {
		t.Fatal(err)
	}
	h.ServeOIDC(rig.login)
	if ready {
		rig.login.Ready(rig.provider(t, rig.issuer.URL))
	}
	rig.jar, _ = cookiejar.New(nil)
	return rig
}

// provider discovers issuer as the daemon does.
func (rig *oidcRig) provider(t *testing.T, issuer string) *oidclogin.Provider {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := oidclogin.New(ctx, rig.config(issuer))
	if err != nil {
		t.Fatalf("discover %s: %v", issuer, err)
	}
	return p
}

func (rig *oidcRig) config(issuer string) oidclogin.Config {
	return oidclogin.Config{Issuer: issuer, ClientID: oidcClientID, ClientSecret: oidcClientSecret,
		RedirectURL: rig.srv.URL + api.OIDCCallbackPath, GroupRoles: oidcGroupRoles,
		Scopes: []string{"email", "profile", "groups"}}
}

// signIn walks the browser from the login route through the issuer to
// the callback and wherever the callback sends it, with accept as the
// Accept header; it returns the last response and its body.
func (rig *oidcRig) signIn(t *testing.T, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rig.srv.URL+api.OIDCLoginPath, nil)
	if accept != "" {
		req.Header.Set("Accept", accept) // kept across the redirects by http.Client
	}
	return rig.do(t, req)
}

func (rig *oidcRig) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	c := &http.Client{Jar: rig.jar, Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// cookie returns the browser's cookie name for the daemon, or nil.
func (rig *oidcRig) cookie(name, path string) *http.Cookie {
	u, _ := url.Parse(rig.srv.URL + path)
	for _, c := range rig.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// register makes user name with e-mail email.
func (rig *oidcRig) register(t *testing.T, name, email string, disabled bool) *store.User {
	t.Helper()
	u := rig.l.User(t, name, false)
	u.Email, u.Disabled = email, disabled
	if err := rig.l.Store().Update(context.Background(), func(tx store.Tx) error { return tx.Users().Update(u) }); err != nil {
		t.Fatal(err)
	}
	return u
}

// sessions returns every session token of every user.
func (rig *oidcRig) sessions(t *testing.T) []store.Token {
	t.Helper()
	var out []store.Token
	err := rig.l.Store().View(context.Background(), func(tx store.Tx) error {
		us, err := tx.Users().List()
		if err != nil {
			return err
		}
		for _, u := range us {
			ts, err := tx.Tokens().List(u.ID)
			if err != nil {
				return err
			}
			for _, tk := range ts {
				if tk.Kind == store.TokenSession {
					out = append(out, tk)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// workspace makes workspace name in the default organization.
func (rig *oidcRig) workspace(t *testing.T, name string) *store.Workspace {
	t.Helper()
	ws := &store.Workspace{Name: name, Kind: store.WorkspaceShared}
	err := rig.l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		ws.OrgID = org.ID
		return tx.Workspaces().Create(ws)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func (rig *oidcRig) membership(t *testing.T, userID int64, ws string) string {
	t.Helper()
	var role string
	err := rig.l.Store().View(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		w, err := tx.Workspaces().Get(org.ID, ws)
		if err != nil {
			return err
		}
		m, err := tx.Memberships().Get(userID, w.ID)
		if err != nil {
			return err
		}
		role = m.Role
		return nil
	})
	if err != nil {
		return "none: " + err.Error()
	}
	return role
}

func (rig *oidcRig) putMembership(t *testing.T, userID, wsID int64, role string) {
	t.Helper()
	err := rig.l.Store().Update(context.Background(), func(tx store.Tx) error {
		return tx.Memberships().Put(&store.Membership{UserID: userID, WorkspaceID: wsID, Role: role})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOIDCLoginSignsInARegisteredUser: a browser goes to the login route,
// through the issuer, back to the callback and on to "/", holding the
// session cookie; with it (and nothing else) the strict API serves it as
// the user whose e-mail the issuer verified: lists, and a create whose
// event names the user as actor. The group mapping put the memberships
// (the strongest role where two groups name one workspace; a held role
// updated; a workspace the mapping does not name untouched; a mapped
// workspace that does not exist skipped), and the session is one store
// row of kind session made by an OIDC login.
func TestOIDCLoginSignsInARegisteredUser(t *testing.T) {
	rig := newOIDCRig(t, true)
	// The e-mail is registered in another case: addresses compare without it.
	alice := rig.register(t, "alice", "Alice@Example.test", false)
	side := rig.workspace(t, "side") // a workspace the mapping does not name
	rig.putMembership(t, alice.ID, side.ID, "user")
	team := rig.workspace(t, "team")
	rig.putMembership(t, alice.ID, team.ID, "viewer")

	if status, _, _ := call(t, rig.srv, http.MethodGet, wire.APIPrefix+"/configs", ""); status != http.StatusUnauthorized {
		t.Fatalf("strict API without credentials: %d, want 401", status)
	}

	resp, body := rig.signIn(t, "")
	if resp.Request.URL.Path != api.OIDCCallbackPath || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `content="0;url=/"`) {
		t.Fatalf("sign-in ended at %s (%d %s), want the callback's page going on to /", resp.Request.URL, resp.StatusCode, body)
	}
	if c := rig.cookie(api.SessionCookie, "/"); c == nil || !strings.HasPrefix(c.Value, "shs_") {
		t.Fatalf("no session cookie %s after the sign-in: %v", api.SessionCookie, c)
	}
	if c := rig.cookie(oidclogin.FlowCookieName, api.OIDCCallbackPath); c != nil {
		t.Errorf("flow cookie still set after the callback: %v", c)
	}
	if got := rig.issuer.LastAuthorize().Get("redirect_uri"); got != rig.srv.URL+api.OIDCCallbackPath {
		t.Errorf("issuer was given redirect_uri %q", got)
	}

	req, _ := http.NewRequest(http.MethodGet, rig.srv.URL+wire.APIPrefix+"/configs", nil)
	if resp, body := rig.do(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET configs with the session cookie: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodPost, rig.srv.URL+wire.APIPrefix+"/networks",
		strings.NewReader(`{"name":"oidc-net","subnet":"10.9.0.0/24","pools":["10.9.0.10-10.9.0.20"]}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, body := rig.do(t, req); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create a network as the OIDC user (admin of main by lab-admins): %d %s", resp.StatusCode, body)
	}
	// The event log is the system administrator's to read: read it from
	// the lab.
	es, err := rig.l.Events.List(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range es {
		if e.Subject == "oidc-net" {
			found = true
			if e.Actor != "alice" {
				t.Errorf("event %s %s %s: actor %q, want alice", e.Object, e.Action, e.Subject, e.Actor)
			}
		}
	}
	if !found {
		t.Errorf("no event of the network's creation in %+v", es)
	}

	for ws, want := range map[string]string{"main": "admin", "team": "author", "side": "user", "nope": "none"} {
		if got := rig.membership(t, alice.ID, ws); !strings.HasPrefix(got, want) {
			t.Errorf("membership of alice in %s: %q, want %q", ws, got, want)
		}
	}

	ss := rig.sessions(t)
	if len(ss) != 1 || ss[0].UserID != alice.ID || !strings.HasPrefix(ss[0].Name, "oidc login from ") {
		t.Fatalf("sessions after one sign-in: %+v, want one of alice's made by an oidc login", ss)
	}
	if !ss[0].ExpiresAt.After(time.Now().Add(api.SessionLifetime - time.Minute)) {
		t.Errorf("session expires at %s, want in %s", ss[0].ExpiresAt, api.SessionLifetime)
	}

	// Logout ends an OIDC session like a password one.
	req, _ = http.NewRequest(http.MethodPost, rig.srv.URL+wire.APIPrefix+"/logout", nil)
	if resp, body := rig.do(t, req); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodGet, rig.srv.URL+wire.APIPrefix+"/configs", nil)
	if resp, body := rig.do(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET configs after logout: %d %s, want 401", resp.StatusCode, body)
	}
}

// TestOIDCLoginAnswersJSON: a client that asks for JSON gets the session
// as the password login returns it, usable as a bearer token.
func TestOIDCLoginAnswersJSON(t *testing.T) {
	rig := newOIDCRig(t, true)
	rig.register(t, "alice", oidcAlice.Email, false)
	resp, body := rig.signIn(t, "application/json")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != api.OIDCCallbackPath {
		t.Fatalf("JSON sign-in: %d at %s: %s", resp.StatusCode, resp.Request.URL.Path, body)
	}
	lr := decodeAs[wire.LoginResponse](t, body)
	if lr.User != "alice" || !strings.HasPrefix(lr.Token, "shs_") {
		t.Fatalf("login response %+v", lr)
	}
	req, _ := http.NewRequest(http.MethodGet, rig.srv.URL+wire.APIPrefix+"/configs", nil)
	req.Header.Set("Authorization", "Bearer "+lr.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET configs with the session as bearer: %d", resp.StatusCode)
	}
}

// TestOIDCLoginRefusesUnregisteredAndDisabled: an e-mail no user has, and
// the e-mail of a disabled user, are refused with 403 saying so; no
// session is made, no cookie set, no membership granted.
func TestOIDCLoginRefusesUnregisteredAndDisabled(t *testing.T) {
	rig := newOIDCRig(t, true)
	bob := rig.register(t, "bob", "bob@example.test", true)
	rig.register(t, "carol", "carol@example.test", false) // another user: her e-mail is not alice's

	for _, tc := range []struct {
		name, email, accept, want string
	}{
		{"unregistered, browser", "alice@example.test", "", `the e-mail &#34;alice@example.test&#34; is not registered`},
		{"unregistered, JSON", "alice@example.test", "application/json", `the e-mail \"alice@example.test\" is not registered`},
		{"disabled", "bob@example.test", "", `the user &#34;bob&#34; of the e-mail &#34;bob@example.test&#34; is disabled`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := oidcAlice
			u.Email = tc.email
			rig.issuer.SetUser(u)
			resp, body := rig.signIn(t, tc.accept)
			if resp.StatusCode != http.StatusForbidden || resp.Request.URL.Path != api.OIDCCallbackPath {
				t.Fatalf("sign-in: %d at %s, want 403 at the callback: %s", resp.StatusCode, resp.Request.URL.Path, body)
			}
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("answer %s\nwant it to say %s", body, tc.want)
			}
			if c := rig.cookie(api.SessionCookie, "/"); c != nil {
				t.Errorf("session cookie set: %v", c)
			}
			if ss := rig.sessions(t); len(ss) != 0 {
				t.Errorf("sessions made: %+v", ss)
			}
		})
	}
	if got := rig.membership(t, bob.ID, "main"); !strings.HasPrefix(got, "none") {
		t.Errorf("the disabled user got a membership of main: %s", got)
	}
}

// TestOIDCLoginWhileTheIssuerIsDown: before the issuer is discovered, and
// after its discovery failed, the login route answers 503 naming the
// issuer (and the API still serves); once discovered, logins work.
func TestOIDCLoginWhileTheIssuerIsDown(t *testing.T) {
	rig := newOIDCRig(t, false)
	rig.register(t, "alice", oidcAlice.Email, false)

	resp, body := rig.signIn(t, "application/json")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), rig.issuer.URL) {
		t.Fatalf("login before discovery: %d %s, want 503 naming %s", resp.StatusCode, body, rig.issuer.URL)
	}

	// An issuer that is down: a port nobody listens on any more.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, derr := oidclogin.New(ctx, rig.config(down))
	if derr == nil {
		t.Fatal("discovery of an issuer that is down succeeded")
	}
	rig.login.Failed(derr)
	for _, accept := range []string{"", "application/json"} {
		resp, body = rig.signIn(t, accept)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), rig.issuer.URL) ||
			!strings.Contains(string(body), "could not be reached") {
			t.Errorf("login (Accept %q) after a failed discovery: %d %s, want 503 naming %s", accept, resp.StatusCode, body, rig.issuer.URL)
		}
	}
	// The callback says the same, and the API still serves.
	req, _ := http.NewRequest(http.MethodGet, rig.srv.URL+api.OIDCCallbackPath+"?code=x&state=y", nil)
	if resp, body := rig.do(t, req); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("callback after a failed discovery: %d %s", resp.StatusCode, body)
	}
	if status, _, body := call(t, rig.srv, http.MethodGet, "/healthz", ""); status != http.StatusOK {
		t.Errorf("healthz while the issuer is down: %d %s", status, body)
	}

	rig.login.Ready(rig.provider(t, rig.issuer.URL))
	if resp, body := rig.signIn(t, "application/json"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login once discovered: %d %s", resp.StatusCode, body)
	}
}

// TestOIDCLoginRefusalMakesNoSession: a login the issuer denies is
// answered 400 with the issuer's reason, and makes no session.
func TestOIDCLoginRefusalMakesNoSession(t *testing.T) {
	rig := newOIDCRig(t, true)
	rig.register(t, "alice", oidcAlice.Email, false)
	rig.issuer.Deny(true)
	resp, body := rig.signIn(t, "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "access_denied") {
		t.Fatalf("denied login: %d %s", resp.StatusCode, body)
	}
	var e wire.Error
	if err := json.Unmarshal(body, &e); err != nil || e.Kind != wire.KindInvalid {
		t.Errorf("denied login body %s: kind %q", body, e.Kind)
	}
	if ss := rig.sessions(t); len(ss) != 0 {
		t.Errorf("sessions made: %+v", ss)
	}
}

// TestOIDCCallbackGoesOnToNext: the callback answers a page of the
// daemon's origin (200, not a redirect: a redirect would still be part of
// the issuer's cross-site navigation, which leaves the SameSite=Strict
// session cookie behind) that goes on to the login's ?next= page; a next
// that is not a path of this site goes to "/"; the next cookie is used
// once.
func TestOIDCCallbackGoesOnToNext(t *testing.T) {
	rig := newOIDCRig(t, true)
	rig.register(t, "alice", "alice@example.test", false)
	for next, want := range map[string]string{
		"/ui/configs/web?x=1":    "/ui/configs/web?x=1",
		"//evil.example/x":       "/",
		"https://evil.example/x": "/",
		"":                       "/",
	} {
		req, _ := http.NewRequest(http.MethodGet, rig.srv.URL+api.OIDCLoginPath+"?next="+url.QueryEscape(next), nil)
		resp, body := rig.do(t, req)
		if resp.Request.URL.Path != api.OIDCCallbackPath || resp.StatusCode != http.StatusOK {
			t.Fatalf("next %q: sign-in ended at %s (%d %s), want the callback's page", next, resp.Request.URL, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("next %q: callback page of type %q", next, ct)
		}
		esc := strings.ReplaceAll(want, "&", "&amp;")
		if !strings.Contains(string(body), `<meta http-equiv="refresh" content="0;url=`+esc+`">`) ||
			!strings.Contains(string(body), `<a href="`+esc+`">`) {
			t.Errorf("next %q: the page does not go on to %q:\n%s", next, want, body)
		}
		if c := rig.cookie(api.SessionCookie, "/"); c == nil || !strings.HasPrefix(c.Value, "shs_") {
			t.Errorf("next %q: no session cookie", next)
		}
		if c := rig.cookie("stagehand_oidc_next", api.OIDCCallbackPath); c != nil {
			t.Errorf("next %q: the next cookie outlives the callback: %v", next, c)
		}
	}
}
