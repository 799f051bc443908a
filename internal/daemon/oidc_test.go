package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
	"stagehand/internal/oidclogin"
	"stagehand/internal/oidclogin/oidctest"
	"stagehand/internal/syncbuf"
)

// TestOIDCFlagsCheck: each bad --oidc-* flag is refused by Config.Check
// (what serve runs before starting) with an invalid error naming the flag
// and the value; good values pass, and a group mapping is read as meant.
func TestOIDCFlagsCheck(t *testing.T) {
	valid := DefaultConfig()
	valid.DataDir = "/var/lib/stagehand"
	valid.Listen = "127.0.0.1:7480"
	valid.OIDC = OIDCConfig{Issuer: "https://id.example.test", ClientID: "stagehand",
		GroupRoles: []string{"lab-admins=main:admin", "cn=devs,ou=groups=acme/web:author"}, Scopes: []string{"email", "groups"}}
	if err := valid.Check(); err != nil {
		t.Fatalf("valid OIDC flags: %v", err)
	}
	grants, err := parseGroupRoles(valid.OIDC.GroupRoles)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]oidclogin.RoleGrant{
		"lab-admins":        {Workspace: "main", Role: "admin"},
		"cn=devs,ou=groups": {Workspace: "acme/web", Role: "author"},
	}
	if len(grants) != len(want) {
		t.Errorf("grants %v, want %v", grants, want)
	}
	for g, w := range want {
		if grants[g] != w {
			t.Errorf("group %q: %+v, want %+v", g, grants[g], w)
		}
	}
	withRedirect := valid
	withRedirect.Listen = ""
	withRedirect.OIDC.RedirectURL = "https://lab.example.test/auth/oidc/callback"
	if err := withRedirect.Check(); err != nil {
		t.Errorf("no --listen but --oidc-redirect-url (behind a proxy): %v", err)
	}

	tests := []struct {
		name   string
		change func(*OIDCConfig, *Config)
		want   string
	}{
		{"no =", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs"} }, `--oidc-group-role "devs": no "=" after the group; want GROUP=WORKSPACE:ROLE`},
		{"no :", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs=main"} }, `--oidc-group-role "devs=main": no ":" between workspace and role`},
		{"no group", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"=main:admin"} }, `--oidc-group-role "=main:admin": no group`},
		{"no workspace", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs=:admin"} }, `--oidc-group-role "devs=:admin": no workspace`},
		{"no role", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs=main:"} }, `--oidc-group-role "devs=main:": no role`},
		{"bad workspace", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs=/main:admin"} }, `--oidc-group-role "devs=/main:admin": workspace "/main" is not ws or org/ws`},
		{"unknown role", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs=main:owner"} }, `--oidc-group-role "devs=main:owner": role "owner": want one of admin`},
		{"group twice", func(o *OIDCConfig, _ *Config) { o.GroupRoles = []string{"devs=main:author", "devs=web:viewer"} }, `--oidc-group-role "devs=web:viewer": group "devs" is already mapped to main:author`},
		{"no client id", func(o *OIDCConfig, _ *Config) { o.ClientID = "" }, "--oidc-issuer needs --oidc-client-id"},
		{"client id without issuer", func(o *OIDCConfig, _ *Config) { o.Issuer = "" }, "need --oidc-issuer"},
		{"scope with a space", func(o *OIDCConfig, _ *Config) { o.Scopes = []string{"email groups"} }, `--oidc-scope "email groups"`},
		{"no listen, no redirect", func(_ *OIDCConfig, c *Config) { c.Listen = "" }, "--oidc-issuer needs --oidc-redirect-url, or --listen"},
		{"every address, no redirect", func(_ *OIDCConfig, c *Config) { c.Listen = "0.0.0.0:7480" }, `--listen "0.0.0.0:7480" needs --oidc-redirect-url`},
		{"any address, no redirect", func(_ *OIDCConfig, c *Config) { c.Listen = ":7480" }, `--listen ":7480" needs --oidc-redirect-url`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			c.OIDC.GroupRoles = append([]string(nil), valid.OIDC.GroupRoles...)
			tt.change(&c.OIDC, &c)
			err := c.Check()
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check() = %v, want an invalid error containing %q", err, tt.want)
			}
		})
	}
}

// TestOIDCKeyIsKept: the flow cookie key is made once, 32 bytes in a 0600
// file, and read back unchanged by the next start (so a sign-in in flight
// survives a restart); a wider mode is narrowed; a key of the wrong size
// or a symlink is refused, not replaced.
func TestOIDCKeyIsKept(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	k1, err := oidcKey(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, OIDCKeyFile)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 || fi.Size() != 32 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key of %d bytes, file of %d bytes mode %v; want 32, 32, 0600", len(k1), fi.Size(), fi.Mode().Perm())
	}
	if bytes.Equal(k1, make([]byte, 32)) {
		t.Fatal("the key is all zeroes")
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	k2, err := oidcKey(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("the second start made another key")
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after the second start %v, want 0600", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("data dir holds %d entries, want the key only (no temporary left)", len(ents))
	}

	if err := os.WriteFile(file, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := oidcKey(dir, log); err == nil || !strings.Contains(err.Error(), "5 bytes, want 32") {
		t.Errorf("a 5-byte key: %v, want it refused", err)
	}
	os.Remove(file)
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), file); err != nil {
		t.Fatal(err)
	}
	if _, err := oidcKey(dir, log); err == nil {
		t.Error("a symlinked key file was followed")
	}
}

const (
	daemonOIDCClient = "stagehand-daemon-test"
	daemonOIDCSecret = "daemon test secret"
)

// runOIDCDaemon runs a daemon signing in through issuer, mapping the
// issuer's group lab-admins to author in main.
func runOIDCDaemon(t *testing.T, issuer string) *testDaemon {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(daemonOIDCSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return runDaemon(t, slog.LevelInfo, func(c *Config) {
		c.OIDC = OIDCConfig{Issuer: issuer, ClientID: daemonOIDCClient, ClientSecretFile: secret,
			GroupRoles: []string{"lab-admins=main:author"}, Scopes: []string{"email", "groups"}}
	})
}

// waitLog waits until the daemon's log holds text.
func waitLog(t *testing.T, logs *syncbuf.Buffer, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the log did not show %q within 15s:\n%s", text, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeOIDCSignIn: serve with --oidc-* flags (the secret in a file,
// the redirect URL derived from --listen) signs a user registered by
// e-mail in through a real issuer: a browser goes from /auth/oidc/login
// to the issuer and back, ends at "/" with the session cookie, and the API
// serves it; the group mapping made the membership; the flow cookie key is
// in DATA/oidc.key.
func TestServeOIDCSignIn(t *testing.T) {
	requireQemuImg(t)
	issuer := oidctest.Start(t, oidctest.Options{ClientID: daemonOIDCClient, ClientSecret: daemonOIDCSecret,
		User: oidctest.User{Subject: "a-1", Email: "alice@example.test", EmailVerified: true, Groups: []string{"lab-admins"}}})
	d := runOIDCDaemon(t, issuer.URL)
	waitLog(t, d.logs, `msg="oidc sign-in ready"`)
	admin := d.adminToken(t)
	base := "http://" + d.addr

	body, _ := json.Marshal(wire.UserRequest{Name: "alice", Email: "alice@example.test"})
	req, _ := http.NewRequest(http.MethodPost, base+wire.APIPrefix+"/users", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register alice: %d", resp.StatusCode)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err = browser.Get(base + api.OIDCLoginPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != api.OIDCCallbackPath || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `content="0;url=/"`) {
		t.Fatalf("sign-in ended at %s: %d %s (want the callback's page going on to /)\nlog:\n%s", resp.Request.URL, resp.StatusCode, b, d.logs)
	}
	if got, want := issuer.LastAuthorize().Get("redirect_uri"), base+api.OIDCCallbackPath; got != want {
		t.Errorf("redirect_uri %q, want %q (the --listen URL)", got, want)
	}
	u, _ := url.Parse(base + "/")
	var session string
	for _, c := range jar.Cookies(u) {
		if c.Name == api.SessionCookie {
			session = c.Value
		}
	}
	if !strings.HasPrefix(session, "shs_") {
		t.Fatalf("no session cookie after the sign-in: %v", jar.Cookies(u))
	}
	resp, err = browser.Get(base + wire.APIPrefix + "/configs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET configs with the session cookie: %d", resp.StatusCode)
	}
	if status, ws := get(t, d.addr, wire.APIPrefix+"/workspaces/default/main", admin, ""); status != http.StatusOK ||
		!strings.Contains(ws, `{"workspace":"default/main","user":"alice","role":"author"}`) {
		t.Errorf("workspace main: %d %s, want alice an author (lab-admins=main:author)", status, ws)
	}
	fi, err := os.Stat(filepath.Join(d.cfg.DataDir, OIDCKeyFile))
	if err != nil || fi.Size() != 32 || fi.Mode().Perm() != 0o600 {
		t.Errorf("DATA/%s: %v, %v", OIDCKeyFile, fi, err)
	}
}

// TestServeOIDCIssuerDown: an issuer that cannot be reached at start does
// not stop the daemon: it serves, logs the failure at ERROR naming the
// issuer, and answers the sign-in route 503 naming the issuer.
func TestServeOIDCIssuerDown(t *testing.T) {
	requireQemuImg(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	d := runOIDCDaemon(t, down)
	waitLog(t, d.logs, `level=ERROR msg="oidc issuer discovery failed; sign-in answers 503 until it succeeds" issuer=`+down)
	status, body := get(t, d.addr, api.OIDCLoginPath, "", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, down) || !strings.Contains(body, "could not be reached") {
		t.Errorf("GET %s with the issuer down: %d %s, want 503 naming %s", api.OIDCLoginPath, status, body, down)
	}
	if status, body := get(t, d.addr, "/healthz", "", ""); status != http.StatusOK {
		t.Errorf("healthz with the issuer down: %d %s", status, body)
	}
}

// TestServeRefusesABadOIDCIssuer: an issuer configuration oidclogin
// refuses (plain http to a host that is not loopback) stops the start
// with that reason, before anything is served.
func TestServeRefusesABadOIDCIssuer(t *testing.T) {
	requireQemuImg(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.NoVMs = true
	cfg.OIDC = OIDCConfig{Issuer: "http://id.example.test", ClientID: "x"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "plain http is allowed only on a loopback address") {
		t.Fatalf("Run = %v, want the issuer refused", err)
	}
}
