package oidclogin

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"

	"stagehand/internal/errdefs"
	"stagehand/internal/oidclogin/oidctest"
)

const (
	loginPath    = "/auth/oidc/login"
	callbackPath = "/auth/oidc/callback"
	clientID     = "stagehand-test"
	clientSecret = "s3cret with spaces&symbols"
)

var alice = oidctest.User{
	Subject:       "alice-sub-1",
	Email:         "alice@example.test",
	EmailVerified: true,
	Name:          "Alice Example",
	Groups:        []string{"lab-admins", "devs", "unmapped"},
}

var groupRoles = map[string]RoleGrant{
	"lab-admins": {Workspace: "main", Role: "admin"},
	"devs":       {Workspace: "team", Role: "author"},
	"qa":         {Workspace: "team", Role: "viewer"},
}

// harness is a daemon stand-in on 127.0.0.1 serving the two login routes
// with a real Provider discovered from a real oidctest issuer, and a browser
// stand-in (a client with a cookie jar).
type harness struct {
	issuer *oidctest.Issuer
	app    *httptest.Server
	p      *Provider
	jar    *cookiejar.Jar

	mu      sync.Mutex
	claims  Claims
	err     error
	calls   int
	headers http.Header // of the last Begin response

	tokenEdits []func(map[string]any) // see editToken
}

func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{issuer: oidctest.Start(t, oidctest.Options{ClientID: clientID, ClientSecret: clientSecret, User: alice})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, func(w http.ResponseWriter, r *http.Request) {
		h.p.Begin(w, r)
		h.mu.Lock()
		h.headers = w.Header().Clone()
		h.mu.Unlock()
	})
	mux.HandleFunc("GET "+callbackPath, func(w http.ResponseWriter, r *http.Request) {
		claims, err := h.p.Finish(w, r)
		h.mu.Lock()
		h.claims, h.err = claims, err
		h.calls++
		h.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(claims)
	})
	h.app = serveLoopback(t, mux)

	cfg := Config{
		Issuer:       h.issuer.URL,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  h.app.URL + callbackPath,
		GroupRoles:   groupRoles,
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.p = p
	h.jar, _ = cookiejar.New(nil)
	return h
}

// serveLoopback serves h on 127.0.0.1 only (httptest may pick [::1]).
func serveLoopback(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// browser follows redirects (follow) or stops at the first one.
func (h *harness) browser(follow bool) *http.Client {
	c := &http.Client{Jar: h.jar, Timeout: 10 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

func (h *harness) get(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp
}

// startLogin walks the browser through Begin and the issuer's /authorize,
// stopping before the callback: it returns the callback URL the issuer
// redirected to.
func (h *harness) startLogin(t *testing.T) *url.URL {
	t.Helper()
	c := h.browser(false)
	resp := h.get(t, c, h.app.URL+loginPath)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: status %d, want 302", resp.StatusCode)
	}
	authURL, _ := resp.Location()
	if !strings.HasPrefix(authURL.String(), h.issuer.URL+"/authorize?") {
		t.Fatalf("login redirects to %s, want the issuer's /authorize", authURL)
	}
	resp = h.get(t, c, authURL.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, want 302", resp.StatusCode)
	}
	cb, _ := resp.Location()
	if !strings.HasPrefix(cb.String(), h.app.URL+callbackPath+"?") {
		t.Fatalf("issuer redirects to %s, want the callback", cb)
	}
	return cb
}

// callback makes the browser GET the callback and returns what Finish said.
func (h *harness) callback(t *testing.T, cb *url.URL) (Claims, error) {
	t.Helper()
	h.mu.Lock()
	before := h.calls
	h.mu.Unlock()
	h.get(t, h.browser(false), cb.String())
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.calls != before+1 {
		t.Fatalf("callback handler ran %d times, want once", h.calls-before)
	}
	return h.claims, h.err
}

func (h *harness) flowCookie(t *testing.T) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(h.app.URL + callbackPath)
	for _, c := range h.jar.Cookies(u) {
		if c.Name == FlowCookieName {
			return c
		}
	}
	return nil
}

func (h *harness) setFlowCookie(value string) {
	u, _ := url.Parse(h.app.URL + callbackPath)
	h.jar.SetCookies(u, []*http.Cookie{{Name: FlowCookieName, Value: value, Path: callbackPath}})
}

// TestLoginRoundTrip signs a user in the way a browser does, following every
// redirect: Begin → issuer /authorize → callback → Finish; the claims and
// role grants come out, the flow was PKCE S256 with state and nonce, the
// flow cookie is cleared, and the same callback cannot be used twice.
func TestLoginRoundTrip(t *testing.T) {
	h := newHarness(t, nil)

	resp, err := h.browser(true).Get(h.app.URL + loginPath)
	if err != nil {
		t.Fatal(err)
	}
	var body Claims
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d after following the login, error %v", resp.StatusCode, h.err)
	}
	want := Claims{
		Issuer: h.issuer.URL, Subject: alice.Subject, Email: alice.Email, EmailVerified: true,
		Name: alice.Name, Groups: alice.Groups,
	}
	if d := cmp.Diff(want, h.claims); d != "" {
		t.Errorf("Finish claims (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, body); d != "" {
		t.Errorf("callback body (-want +got):\n%s", d)
	}
	if got := h.p.CallbackPath(); got != callbackPath {
		t.Errorf("CallbackPath() = %q, want %q", got, callbackPath)
	}
	wantGrants := []RoleGrant{{Workspace: "main", Role: "admin"}, {Workspace: "team", Role: "author"}}
	if d := cmp.Diff(wantGrants, h.p.Roles(h.claims)); d != "" {
		t.Errorf("Roles (-want +got):\n%s", d)
	}
	if n := h.issuer.TokenRequests(); n != 1 {
		t.Errorf("issuer answered %d code exchanges, want 1", n)
	}

	auth := h.issuer.LastAuthorize()
	if auth.Get("code_challenge_method") != "S256" || auth.Get("nonce") == "" || auth.Get("state") == "" {
		t.Errorf("authorize request lacks PKCE S256, nonce or state: %v", auth)
	}
	if got := auth.Get("scope"); got != "openid email profile" {
		t.Errorf("scope = %q, want %q", got, "openid email profile")
	}
	if got := auth.Get("redirect_uri"); got != h.app.URL+callbackPath {
		t.Errorf("redirect_uri = %q", got)
	}

	set, err := http.ParseSetCookie(h.headers.Get("Set-Cookie"))
	if err != nil {
		t.Fatalf("Begin's Set-Cookie: %v", err)
	}
	if set.Name != FlowCookieName || !set.HttpOnly || set.SameSite != http.SameSiteLaxMode ||
		set.Path != callbackPath || set.MaxAge != int(FlowLifetime/time.Second) || set.Secure {
		t.Errorf("flow cookie over plain http = %+v, want %s HttpOnly SameSite=Lax Path=%s MaxAge=%d not Secure",
			set, FlowCookieName, callbackPath, int(FlowLifetime/time.Second))
	}
	if strings.Contains(set.Value, auth.Get("code_challenge")) || !strings.Contains(h.headers.Get("Cache-Control"), "no-store") {
		t.Errorf("Begin response: cookie %q, Cache-Control %q", set.Value, h.headers.Get("Cache-Control"))
	}
	if c := h.flowCookie(t); c != nil {
		t.Errorf("flow cookie still in the browser after Finish: %v", c)
	}

	// Replaying the callback (the browser's back button, or a stolen URL)
	// finds no flow cookie any more.
	cb, _ := url.Parse(h.app.URL + callbackPath + "?" + url.Values{"state": {auth.Get("state")}, "code": {"whatever"}}.Encode())
	if _, err := h.callback(t, cb); !errors.Is(err, errFlowCookie) {
		t.Errorf("replayed callback: err = %v, want a flow cookie refusal", err)
	}
}

// TestBeginCookieSecureOverTLS: the flow cookie is Secure when Begin is
// reached over TLS, and still HttpOnly and SameSite=Lax.
func TestBeginCookieSecureOverTLS(t *testing.T) {
	h := newHarness(t, nil)
	r := httptest.NewRequest("GET", "https://stagehand.test"+loginPath, nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	h.p.Begin(w, r)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Begin set %d cookies, want 1", len(cookies))
	}
	c := cookies[0]
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie over TLS = %+v, want Secure HttpOnly SameSite=Lax", c)
	}
	if w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), h.issuer.URL+"/authorize?") {
		t.Errorf("Begin answered %d to %q", w.Code, w.Header().Get("Location"))
	}
}

// TestLoginRefused: each way a login must fail, refused by the check that
// is meant to catch it, with no claims, as a user error (kind invalid).
func TestLoginRefused(t *testing.T) {
	tests := []struct {
		name string
		// before runs after New and before the browser starts the login.
		before func(h *harness)
		// tamper runs between the issuer's redirect and the callback.
		tamper       func(t *testing.T, h *harness, cb *url.URL)
		reason       error
		wantExchange bool // whether the code may reach the issuer's /token
		check        func(t *testing.T, err error)
	}{
		{
			name: "wrong state",
			tamper: func(t *testing.T, h *harness, cb *url.URL) {
				q := cb.Query()
				q.Set("state", randomToken())
				cb.RawQuery = q.Encode()
			},
			reason: errState,
		},
		{
			name:   "missing flow cookie",
			tamper: func(t *testing.T, h *harness, cb *url.URL) { h.jar, _ = cookiejar.New(nil) },
			reason: errFlowCookie,
		},
		{
			name: "tampered flow cookie",
			tamper: func(t *testing.T, h *harness, cb *url.URL) {
				// The real cookie with its signature, and a nonce of the
				// attacker's choosing in the payload.
				payload, sig, _ := strings.Cut(h.flowCookie(t).Value, ".")
				b, _ := base64.RawURLEncoding.DecodeString(payload)
				var f flow
				if err := json.Unmarshal(b, &f); err != nil {
					t.Fatal(err)
				}
				f.Nonce = "attacker"
				b, _ = json.Marshal(f)
				h.setFlowCookie(base64.RawURLEncoding.EncodeToString(b) + "." + sig)
			},
			reason: errFlowCookie,
			check:  wantMessage("bad signature"),
		},
		{
			name: "flow cookie signed with another key",
			tamper: func(t *testing.T, h *harness, cb *url.URL) {
				// The attacker knows the state (it is in the URL) and seals
				// a flow of their own, but not with the daemon's key.
				f := flow{State: cb.Query().Get("state"), Nonce: "n", Verifier: "attacker-verifier-attacker-verifier-attacker", Expires: time.Now().Add(time.Hour).Unix()}
				h.setFlowCookie(f.seal([]byte(strings.Repeat("k", 32))))
			},
			reason: errFlowCookie,
		},
		{
			name: "expired flow cookie",
			tamper: func(t *testing.T, h *harness, cb *url.URL) {
				h.p.now = func() time.Time { return time.Now().Add(FlowLifetime + time.Second) }
			},
			reason: errFlowCookie,
			check:  wantMessage("expired"),
		},
		{
			name:   "issuer reports access_denied",
			before: func(h *harness) { h.issuer.Deny(true) },
			reason: errIssuerError,
			check:  wantMessage("access_denied"),
		},
		{
			name:         "wrong nonce",
			before:       func(h *harness) { editToken(h, "nonce", "not-the-nonce-we-sent") },
			reason:       errNonce,
			wantExchange: true,
		},
		{
			name:         "missing nonce",
			before:       func(h *harness) { h.issuer.EditIDToken(func(c map[string]any) { delete(c, "nonce") }) },
			reason:       errNonce,
			wantExchange: true,
		},
		{
			name:         "wrong audience",
			before:       func(h *harness) { editToken(h, "aud", "some-other-client") },
			reason:       errIDToken,
			wantExchange: true,
			check:        wantMessage("audience"),
		},
		{
			name:         "issued to another party (azp)",
			before:       func(h *harness) { editToken(h, "aud", []string{clientID, "other"}); editToken(h, "azp", "other") },
			reason:       errIDToken,
			wantExchange: true,
			check:        wantMessage("azp"),
		},
		{
			name:         "other issuer",
			before:       func(h *harness) { editToken(h, "iss", "http://127.0.0.1:1") },
			reason:       errIDToken,
			wantExchange: true,
			check:        wantMessage("different provider"),
		},
		{
			name: "expired id token",
			before: func(h *harness) {
				editToken(h, "exp", time.Now().Add(-time.Minute).Unix())
				editToken(h, "iat", time.Now().Add(-time.Hour).Unix())
			},
			reason:       errIDToken,
			wantExchange: true,
			check: func(t *testing.T, err error) {
				var expired *oidc.TokenExpiredError
				if !errors.As(err, &expired) {
					t.Errorf("err = %v, want a *oidc.TokenExpiredError inside", err)
				}
			},
		},
		{
			name:         "id token signed with a key the issuer does not publish",
			before:       func(h *harness) { h.issuer.SignWithUnpublishedKey(true) },
			reason:       errIDToken,
			wantExchange: true,
			check:        wantMessage("signature"),
		},
		{
			name: "unverified e-mail",
			before: func(h *harness) {
				u := alice
				u.EmailVerified = false
				h.issuer.SetUser(u)
			},
			reason:       errEmailUnverified,
			wantExchange: true,
			check:        wantMessage(alice.Email),
		},
		{
			name:         "no e-mail",
			before:       func(h *harness) { h.issuer.EditIDToken(func(c map[string]any) { delete(c, "email") }) },
			reason:       errEmailUnverified,
			wantExchange: true,
		},
		{
			name: "code used twice",
			tamper: func(t *testing.T, h *harness, cb *url.URL) {
				// Someone redeems the code first (without the verifier: it fails, and burns the code).
				resp, err := http.PostForm(h.issuer.URL+"/token", url.Values{"grant_type": {"authorization_code"},
					"code": {cb.Query().Get("code")}, "client_id": {clientID}, "client_secret": {clientSecret},
					"redirect_uri": {h.app.URL + callbackPath}, "code_verifier": {"guess"}})
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			},
			reason: errCodeExchange,
			check:  wantMessage("invalid_grant"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			if tt.before != nil {
				tt.before(h)
			}
			cb := h.startLogin(t)
			if tt.tamper != nil {
				tt.tamper(t, h, cb)
			}
			claims, err := h.callback(t, cb)
			if !errors.Is(err, tt.reason) {
				t.Fatalf("err = %v, want the %q refusal", err, tt.reason)
			}
			if !errors.Is(err, ErrRefused) || errdefs.Kind(err) != errdefs.ErrInvalid {
				t.Errorf("err = %v: not ErrRefused of kind invalid", err)
			}
			if !strings.HasPrefix(err.Error(), "oidc login refused: ") {
				t.Errorf("message %q does not say the login was refused", err)
			}
			if d := cmp.Diff(Claims{}, claims); d != "" {
				t.Errorf("a refused login returned claims:\n%s", d)
			}
			if n := h.issuer.TokenRequests(); (n > 0) != tt.wantExchange {
				t.Errorf("issuer answered %d code exchanges; want an exchange: %v", n, tt.wantExchange)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

// editToken makes the issuer set claim to value in the ID tokens it signs,
// on top of the test's earlier edits.
func editToken(h *harness, claim string, value any) {
	h.tokenEdits = append(h.tokenEdits, func(c map[string]any) { c[claim] = value })
	edits := slices.Clone(h.tokenEdits)
	h.issuer.EditIDToken(func(c map[string]any) {
		for _, edit := range edits {
			edit(c)
		}
	})
}

func wantMessage(part string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q does not mention %q", err, part)
		}
	}
}

// TestNewDiscoveryFailure: an issuer nobody listens on fails New at once,
// naming the issuer, as unavailable.
func TestNewDiscoveryFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	l.Close()

	_, err = New(context.Background(), Config{Issuer: issuer, ClientID: clientID, RedirectURL: "http://127.0.0.1:1" + callbackPath})
	if err == nil {
		t.Fatal("New succeeded against a closed port")
	}
	if errdefs.Kind(err) != errdefs.ErrUnavailable || !strings.Contains(err.Error(), fmt.Sprintf("oidc issuer %q: discovery", issuer)) {
		t.Errorf("err = %v (kind %v), want unavailable naming the issuer", err, errdefs.Kind(err))
	}
}

// TestNewDiscoveryBoundedByContext: an issuer that accepts the connection
// and never answers holds New only as long as the caller's context.
func TestNewDiscoveryBoundedByContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	// Close first, then wait for the accept loop to close what it holds.
	t.Cleanup(func() { l.Close(); conns.Wait() })
	conns.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	})
	issuer := "http://" + l.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = New(ctx, Config{Issuer: issuer, ClientID: clientID, RedirectURL: "http://127.0.0.1:1" + callbackPath})
	took := time.Since(start)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), issuer) {
		t.Errorf("err = %v, want a deadline error naming %s", err, issuer)
	}
	if took > 5*time.Second {
		t.Errorf("New took %v with a 300ms context", took)
	}
}

// TestNewRejectsConfig: a configuration that cannot work is refused before
// any request, as invalid.
func TestNewRejectsConfig(t *testing.T) {
	good := Config{Issuer: "https://issuer.test", ClientID: clientID, RedirectURL: "https://stagehand.test" + callbackPath}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no client id", func(c *Config) { c.ClientID = "" }, "client id is required"},
		{"no issuer", func(c *Config) { c.Issuer = "" }, "issuer is required"},
		{"plain http issuer off loopback", func(c *Config) { c.Issuer = "http://issuer.test" }, "plain http"},
		{"relative redirect", func(c *Config) { c.RedirectURL = callbackPath }, "absolute https URL"},
		{"plain http redirect off loopback", func(c *Config) { c.RedirectURL = "http://10.0.0.1/cb" }, "plain http"},
		{"short cookie key", func(c *Config) { c.CookieKey = []byte("short") }, "at least 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			_, err := New(context.Background(), cfg)
			if errdefs.Kind(err) != errdefs.ErrInvalid || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("err = %v, want invalid mentioning %q", err, tt.want)
			}
		})
	}
}

// TestRoles: groups map to their grants, unknown groups to nothing, and two
// groups granting the same role give it once, in a stable order.
func TestRoles(t *testing.T) {
	p := &Provider{cfg: Config{GroupRoles: map[string]RoleGrant{
		"admins": {Workspace: "main", Role: "admin"},
		"devs":   {Workspace: "team", Role: "author"},
		"devs2":  {Workspace: "team", Role: "author"},
		"qa":     {Workspace: "qa", Role: "viewer"},
	}}}
	tests := []struct {
		groups []string
		want   []RoleGrant
	}{
		{nil, nil},
		{[]string{"nobody-knows"}, nil},
		{[]string{"devs", "admins"}, []RoleGrant{{"main", "admin"}, {"team", "author"}}},
		{[]string{"devs2", "devs", "qa"}, []RoleGrant{{"qa", "viewer"}, {"team", "author"}}},
	}
	for _, tt := range tests {
		if d := cmp.Diff(tt.want, p.Roles(Claims{Groups: tt.groups})); d != "" {
			t.Errorf("Roles(%v) (-want +got):\n%s", tt.groups, d)
		}
	}
}

// TestDecodeClaims: the claim shapes providers really send.
func TestDecodeClaims(t *testing.T) {
	tests := []struct {
		name, raw, groupsClaim string
		want                   Claims
		refused                bool
	}{
		{"bool verified, list of groups", `{"email":"a@x","email_verified":true,"name":"A","groups":["g1","g2"]}`, "groups",
			Claims{Email: "a@x", EmailVerified: true, Name: "A", Groups: []string{"g1", "g2"}}, false},
		{"string verified", `{"email":"a@x","email_verified":"true"}`, "groups", Claims{Email: "a@x", EmailVerified: true}, false},
		{"string not verified", `{"email":"a@x","email_verified":"false"}`, "groups", Claims{Email: "a@x"}, false},
		{"no email_verified", `{"email":"a@x"}`, "groups", Claims{Email: "a@x"}, false},
		{"single group as a string", `{"groups":"g1"}`, "groups", Claims{Groups: []string{"g1"}}, false},
		{"null groups", `{"groups":null}`, "groups", Claims{}, false},
		{"custom groups claim", `{"groups":["ignored"],"roles":["r1"]}`, "roles", Claims{Groups: []string{"r1"}}, false},
		{"our azp", `{"azp":"` + clientID + `"}`, "groups", Claims{}, false},
		{"groups of the wrong shape", `{"groups":{"a":1}}`, "groups", Claims{}, true},
		{"email_verified of the wrong shape", `{"email_verified":1}`, "groups", Claims{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeClaims([]byte(tt.raw), tt.groupsClaim, clientID)
			if tt.refused {
				if !errors.Is(err, errIDToken) {
					t.Errorf("err = %v, want an id token refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
