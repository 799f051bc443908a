package api_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/peer"
	"stagehand/internal/store"
)

// sendAs sends one request with headers hdr and returns status, headers and
// body.
func sendAs(t *testing.T, srv *httptest.Server, method, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// pathParam fills a route pattern's path values with names of the seeded
// lab (config web, VM vm1, disk and NIC 0) or of nothing at all.
var pathParam = regexp.MustCompile(`\{[^}]+\}`)

func fillPattern(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	return method, pathParam.ReplaceAllStringFunc(path, func(p string) string {
		switch p {
		case "{name}":
			return "web"
		case "{vm}":
			return "vm1"
		case "{disk}", "{nic}":
			return "0"
		default:
			return "x"
		}
	})
}

// configNames lists the configurations as the system sees them.
func configNames(t *testing.T, l *apitest.Lab) []string {
	t.Helper()
	cs, err := l.Configs.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name+"/"+c.State)
	}
	return names
}

// TestC1NoCredentialsIs401OnEveryRoute reproduces C1: served as the
// daemon serves it, every route but the public ones answers a request
// without credentials 401 with a Bearer challenge, whatever its method and
// body, and nothing changes.
func TestC1NoCredentialsIs401OnEveryRoute(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, h := apitest.ServeStrict(t, l)
	before := configNames(t, l)
	n := 0
	for _, ri := range h.Routes() {
		if ri.Public {
			continue
		}
		method, path := fillPattern(ri.Pattern)
		status, hdr, body := sendAs(t, srv, method, path, `{"name":"x","config":"web"}`, map[string]string{"Content-Type": "application/json"})
		if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != `Bearer realm="stagehand"` {
			t.Errorf("%s without credentials: %d %s (WWW-Authenticate %q), want 401", ri.Pattern, status, body, hdr.Get("WWW-Authenticate"))
		}
		n++
	}
	// Unknown paths too: nothing about the API is told before authentication.
	if status, _, _ := sendAs(t, srv, "GET", "/api/v1/nothing-here", "", nil); status != http.StatusUnauthorized {
		t.Errorf("unknown path without credentials: %d, want 401", status)
	}
	for _, p := range []string{"/healthz", "/readyz", "/api/v1/healthz"} {
		if status, _, body := sendAs(t, srv, "GET", p, "", nil); status != http.StatusOK {
			t.Errorf("public %s: %d %s", p, status, body)
		}
	}
	if after := configNames(t, l); !slices.Equal(before, after) {
		t.Errorf("configurations changed by unauthenticated requests: %v -> %v", before, after)
	}
	if n < 50 {
		t.Errorf("only %d routes tried", n)
	}
}

// TestBadCredentialsAre401NamingWhy: a malformed, unknown, wrong,
// expired or revoked token, a token of a disabled user, a session sent as
// an API token, and a bad cookie are each 401 with a message saying
// which, never echoing the secret; a good one passes.
func TestBadCredentialsAre401NamingWhy(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	good := l.AdminToken(t)
	expired := l.Token(t, "admin", apitest.TokenOptions{Expires: time.Now().Add(-time.Minute)})
	revoked := l.Token(t, "admin", apitest.TokenOptions{Revoked: true})
	session := l.Token(t, "admin", apitest.TokenOptions{Session: true})
	l.User(t, "dora", false)
	disabled := l.Token(t, "dora", apitest.TokenOptions{})
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		u, err := tx.Users().Get("dora")
		if err != nil {
			return err
		}
		u.Disabled = true
		return tx.Users().Update(u)
	}); err != nil {
		t.Fatal(err)
	}
	wrong := good[:len(good)-4] + "AAAA"
	unknown := "sht_aaaaaaaaaaaa_" + good[len("sht_aaaaaaaaaaaa_"):]
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want string
	}{
		{"malformed", bearer("sht_short"), "malformed API token"},
		{"not bearer", map[string]string{"Authorization": "Basic YTpi"}, "Bearer TOKEN"},
		{"unknown", bearer(unknown), "is unknown"},
		{"wrong secret", bearer(wrong), "wrong secret"},
		{"expired", bearer(expired), "expired on"},
		{"revoked", bearer(revoked), "was revoked on"},
		{"disabled user", bearer(disabled), "dora\\\" is disabled"},
		{"cookie of an API token", map[string]string{"Cookie": api.SessionCookie + "=" + good}, "malformed session"},
	} {
		status, _, body := sendAs(t, srv, "GET", "/api/v1/configs", "", tc.hdr)
		if status != http.StatusUnauthorized || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want 401 saying %q", tc.name, status, body, tc.want)
		}
		for _, v := range tc.hdr {
			if secret := strings.TrimPrefix(v, "Bearer "); len(secret) > 20 && strings.Contains(body, secret[len(secret)-20:]) {
				t.Errorf("%s: the answer echoes the token: %s", tc.name, body)
			}
		}
	}
	for name, hdr := range map[string]map[string]string{
		"API token": bearer(good), "session as bearer": bearer(session),
		"session cookie": {"Cookie": api.SessionCookie + "=" + session},
	} {
		if status, _, body := sendAs(t, srv, "GET", "/api/v1/configs", "", hdr); status != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", name, status, body)
		}
	}
	// The last use is written, once a minute at most (not once a request).
	tokID := good[len("sht_") : len("sht_")+auth.TokenIDLen]
	lastUse := func() time.Time {
		var at time.Time
		l.Store().View(context.Background(), func(tx store.Tx) error {
			tk, err := tx.Tokens().Get(tokID)
			if err == nil {
				at = tk.LastUsedAt
			}
			return err
		})
		return at
	}
	first := lastUse()
	if first.IsZero() {
		t.Fatalf("the token's last use was not written")
	}
	sendAs(t, srv, "GET", "/api/v1/configs", "", bearer(good))
	if again := lastUse(); !again.Equal(first) {
		t.Errorf("last use written again within a minute: %v then %v", first, again)
	}
}

// TestUnixPeerRootIsTheSystemAdministrator: over a connection whose peer
// is uid 0 a request needs no token; another uid does.
func TestUnixPeerRootIsTheSystemAdministrator(t *testing.T) {
	l := apitest.New(t).Seed(t)
	_, h := apitest.ServeStrict(t, l)
	for _, tc := range []struct {
		uid  uint32
		want int
	}{{0, http.StatusOK}, {1000, http.StatusUnauthorized}} {
		srv := httptest.NewUnstartedServer(h)
		srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return peer.WithCred(ctx, peer.Cred{UID: tc.uid, GID: tc.uid, PID: 1})
		}
		srv.Start()
		status, _, body := sendAs(t, srv, "DELETE", "/api/v1/configs/web", "", nil)
		srv.Close()
		if status != tc.want && !(tc.want == http.StatusOK && status == http.StatusNoContent) {
			t.Errorf("uid %d: DELETE /configs/web %d %s, want %d", tc.uid, status, body, tc.want)
		}
	}
	evs, err := l.Events.List(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[len(evs)-1].Actor != "root" {
		t.Errorf("events %+v: want the delete recorded with actor root", evs)
	}
}

// TestH1CrossSiteRequestsAreRefused reproduces H1 with what a browser
// sends: a text/plain POST from another site carrying the user's session
// cookie is refused 403 and changes nothing (the lease that would let the
// configuration be reaped, the cleanup); a Host that is not this server's
// (DNS rebinding) is refused 421; a console upgrade from another origin is
// refused 403. The same requests from the server's own origin pass.
func TestH1CrossSiteRequestsAreRefused(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	setPassword(t, l, "alice", "correct horse battery", true)
	cookie := login(t, srv, "alice", "correct horse battery").Header.Get("Set-Cookie")
	session := strings.SplitN(cookie, ";", 2)[0]
	before := configNames(t, l)
	crossSite := map[string]string{"Cookie": session, "Content-Type": "text/plain",
		"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
	for _, rq := range []struct{ method, path, body string }{
		{"POST", "/api/v1/configs/web/lease", `{"storage":"1ns"}`},
		{"POST", "/api/v1/cleanup", `{}`},
		{"DELETE", "/api/v1/configs/web", ``},
	} {
		status, _, body := sendAs(t, srv, rq.method, rq.path, rq.body, crossSite)
		if status != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
			t.Errorf("cross-site %s %s: %d %s, want 403", rq.method, rq.path, status, body)
		}
		// Origin alone (an older browser without Sec-Fetch-Site).
		status, _, body = sendAs(t, srv, rq.method, rq.path, rq.body, map[string]string{"Cookie": session, "Origin": "http://evil.example"})
		if status != http.StatusForbidden {
			t.Errorf("%s %s with Origin evil.example: %d %s, want 403", rq.method, rq.path, status, body)
		}
	}
	if after := configNames(t, l); !slices.Equal(before, after) {
		t.Errorf("cross-site requests changed the configurations: %v -> %v", before, after)
	}
	c, err := l.GetConfig(context.Background(), "web")
	if err != nil || !c.Lease.StorageExpires.IsZero() {
		t.Errorf("web after the cross-site lease: %+v, %v; want it there with its lease unchanged", c, err)
	}

	for _, host := range []string{"evil.example", "evil.example:" + strings.Split(srv.URL, ":")[2], "rebind.attacker.test"} {
		status, _, body := sendAs(t, srv, "GET", "/api/v1/configs", "", map[string]string{"Cookie": session, "Host": host})
		if status != http.StatusMisdirectedRequest || !strings.Contains(body, "not a name of this server") {
			t.Errorf("Host %s: %d %s, want 421", host, status, body)
		}
	}
	status, _, body := sendAs(t, srv, "GET", "/api/v1/configs/web/vms/vm1/console", "", map[string]string{"Cookie": session,
		"Connection": "Upgrade", "Upgrade": wire.ConsoleProtocol, "Origin": "http://evil.example"})
	if status != http.StatusForbidden || !strings.Contains(body, "console upgrade from origin") {
		t.Errorf("cross-origin console upgrade: %d %s, want 403", status, body)
	}

	// From the server's own origin, and from a client that is no browser.
	self := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	_, port, _ := strings.Cut(strings.TrimPrefix(self, "http://"), ":")
	if status, _, body := sendAs(t, srv, "POST", "/api/v1/configs/web/lease", `{"storage":"720h"}`,
		map[string]string{"Cookie": session, "Content-Type": "application/json", "Origin": self, "Host": "localhost:" + port, "Sec-Fetch-Site": "same-origin"}); status != http.StatusOK {
		t.Errorf("same-origin lease: %d %s", status, body)
	}
}

// TestL3ActorIsTheAuthenticatedUser reproduces L3: the X-Stagehand-User
// header is ignored; the event names the user of the token.
func TestL3ActorIsTheAuthenticatedUser(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	l.User(t, "alice", true)
	tok := l.Token(t, "alice", apitest.TokenOptions{})
	status, _, body := sendAs(t, srv, "DELETE", "/api/v1/configs/web", "", map[string]string{"Authorization": "Bearer " + tok, "X-Stagehand-User": "reaper"})
	if status != http.StatusNoContent && status != http.StatusOK {
		t.Fatalf("delete: %d %s", status, body)
	}
	evs, err := l.Events.List(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, e := range evs {
		if e.Action == "delete" {
			actors = append(actors, e.Actor)
		}
	}
	if !slices.Equal(actors, []string{"alice"}) {
		t.Errorf("delete events' actors %v, want [alice] (never the header's reaper)", actors)
	}
}

func setPassword(t *testing.T, l *apitest.Lab, name, pw string, systemAdmin bool) {
	t.Helper()
	l.User(t, name, systemAdmin)
	hash, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		u, err := tx.Users().Get(name)
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		return tx.Users().Update(u)
	}); err != nil {
		t.Fatal(err)
	}
}

// login logs in and returns the answer, which must be 200.
func login(t *testing.T, srv *httptest.Server, user, pw string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/login", strings.NewReader(`{"user":"`+user+`","password":"`+pw+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("login %s: %d %s", user, resp.StatusCode, b)
	}
	return resp
}

// TestLogin: the right password gives a session (cookie HttpOnly,
// SameSite=Strict, not Secure over plain HTTP; the same token in the body)
// that authenticates as cookie and as bearer; a wrong password and an
// unknown user get the same 401; five failures lock the pair out (429
// with Retry-After) even for the right password, while another user is
// not locked; logout revokes the session; a form-encoded login is refused.
func TestLogin(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	setPassword(t, l, "alice", "correct horse battery", false)
	setPassword(t, l, "bob", "another good password", false)

	resp := login(t, srv, "alice", "correct horse battery")
	var c *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == api.SessionCookie {
			c = ck
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || !strings.HasPrefix(c.Value, "shs_") || c.MaxAge != int(api.SessionLifetime/time.Second) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, shs_, 12 h", c)
	}
	if status, _, body := sendAs(t, srv, "GET", "/api/v1/status", "", map[string]string{"Cookie": c.Name + "=" + c.Value}); status != http.StatusOK {
		t.Errorf("status with the cookie: %d %s", status, body)
	}
	if status, _, body := sendAs(t, srv, "GET", "/api/v1/status", "", bearer(c.Value)); status != http.StatusOK {
		t.Errorf("status with the session as bearer: %d %s", status, body)
	}

	json := map[string]string{"Content-Type": "application/json"}
	_, _, wrongPw := sendAs(t, srv, "POST", "/api/v1/login", `{"user":"bob","password":"nope nope nope"}`, json)
	_, _, noUser := sendAs(t, srv, "POST", "/api/v1/login", `{"user":"nobody","password":"nope nope nope"}`, json)
	if !strings.Contains(wrongPw, "wrong user name or password") || wrongPw != noUser {
		t.Errorf("wrong password %q and unknown user %q: want the same 401", wrongPw, noUser)
	}
	if status, _, body := sendAs(t, srv, "POST", "/api/v1/login", "user=bob&password=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); status != http.StatusBadRequest {
		t.Errorf("form login: %d %s, want 400", status, body)
	}

	for i := 0; i < auth.ThrottleFailures; i++ { // one failure above, so this goes past the limit
		sendAs(t, srv, "POST", "/api/v1/login", `{"user":"bob","password":"still wrong `+strconv.Itoa(i)+`"}`, json)
	}
	status, hdr, body := sendAs(t, srv, "POST", "/api/v1/login", `{"user":"bob","password":"another good password"}`, json)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("after %d failures: %d %s (Retry-After %q), want 429", auth.ThrottleFailures+1, status, body, hdr.Get("Retry-After"))
	}
	login(t, srv, "alice", "correct horse battery") // another user is not locked

	if status, _, body := sendAs(t, srv, "POST", "/api/v1/logout", "", bearer(c.Value)); status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", status, body)
	}
	if status, _, body := sendAs(t, srv, "GET", "/api/v1/status", "", bearer(c.Value)); status != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("the session after logout: %d %s, want 401 revoked", status, body)
	}
}

// TestNoRequestReachesAHandlerWithoutIdentity: every handler the daemon
// serves sees an identity (the lab reads none as the system): a server
// wrapped to look at what reaches the mux finds one on every request
// that was not refused.
func TestNoRequestReachesAHandlerWithoutIdentity(t *testing.T) {
	l := apitest.New(t).Seed(t)
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Drain)
	tok := l.AdminToken(t)
	for _, ri := range h.Routes() {
		if ri.Public {
			continue
		}
		method, path := fillPattern(ri.Pattern)
		for _, hdr := range []map[string]string{nil, bearer("sht_bogus"), bearer(tok)} {
			req := httptest.NewRequest(method, "http://localhost"+path, strings.NewReader(`{"x":1}`))
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if hdr == nil || hdr["Authorization"] == "Bearer sht_bogus" {
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("%s with %v: %d, want 401", ri.Pattern, hdr, rec.Code)
				}
			} else if rec.Code == http.StatusUnauthorized {
				t.Errorf("%s with the admin token: 401 %s", ri.Pattern, rec.Body)
			}
		}
	}
}
