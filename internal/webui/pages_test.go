package webui_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/lab"
	"stagehand/internal/oidclogin"
	"stagehand/internal/oidclogin/oidctest"
	"stagehand/internal/store"
	"stagehand/internal/webui"
)

// objectLab is the console over a seeded lab (template tmpl, network lan,
// configuration web in default/main) that also holds a library entry
// web-lib, an archive web-arch with web's snapshot before-arch, and a second workspace w2 with a
// configuration secret on lan (10.0.0.11) that members of main only do not
// see.
func objectLab(t *testing.T) *console {
	t.Helper()
	c := newConsole(t, webui.Options{})
	ctx := context.Background() // the system
	if _, err := c.Library.Capture(ctx, "web", "web-lib", lab.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snapshots.Create(ctx, "web", "before-arch", false); err != nil {
		t.Fatal(err)
	}
	j, err := c.Archives.StartCreate(ctx, "web", "web-arch", lab.CreateOptions{WithSnapshots: true})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if j, err = c.Jobs().Wait(wctx, j.ID); err != nil || j.State != "succeeded" {
		t.Fatalf("archive web-arch: %v %+v", err, j)
	}
	err = c.Store().Update(ctx, func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		return tx.Workspaces().Create(&store.Workspace{OrgID: org.ID, Name: "w2", Kind: store.WorkspaceShared})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configs.Create(ctx, lab.ConfigSpec{Name: "secret", Workspace: "w2",
		VMs: []lab.VMSpec{{Name: "vm1", Template: "tmpl", Network: "lan"}}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// admin returns a session of a new system administrator.
func (c *console) admin(t *testing.T) string {
	t.Helper()
	c.User(t, "admin", true)
	return c.Token(t, "admin", apitest.TokenOptions{Session: true})
}

// page gets path as session and fails unless it answers 200.
func (c *console) page(t *testing.T, session, path string) string {
	t.Helper()
	res, body := c.get(t, session, path)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d: %.400s", path, res.StatusCode, body)
	}
	return body
}

// actionsOf returns every data-action of page: buttons, links, selects.
func actionsOf(t *testing.T, page string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, tag := range []string{"button", "a", "select"} {
		for _, e := range elements(t, page, tag) {
			out[e["data-action"]] = true
		}
	}
	return out
}

// rowNames returns the data-name of every table row of page.
func rowNames(t *testing.T, page string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, tr := range elements(t, page, "tr") {
		if n := tr["data-name"]; n != "" {
			out[n] = true
		}
	}
	return out
}

// objectPages are the pages of the object and admin sections, with the
// rows and the actions a system administrator sees on them.
var objectPages = []struct {
	path    string
	rows    []string
	actions []string
	cli     string
}{
	{"/ui/templates", []string{"tmpl"}, []string{"template.import", "template.open"}, "stagehand template import {name}"},
	{"/ui/templates/tmpl", nil, []string{"template.delete", "template.delete.confirm", "config.open"}, "stagehand template delete tmpl"},
	{"/ui/networks", []string{"lan"}, []string{"network.create", "network.open"}, "stagehand network create {name}"},
	{"/ui/networks/lan", []string{"10.0.0.10", "10.0.0.11"}, []string{"network.delete"}, "stagehand network delete lan"},
	{"/ui/library", []string{"web-lib"}, []string{"library.capture", "library.open"}, "stagehand library capture {config} {name}"},
	{"/ui/library/web-lib", []string{"vm1"}, []string{"library.checkout", "library.delete"}, "stagehand library checkout web-lib {name}"},
	{"/ui/archives", []string{"web-arch"}, []string{"archive.create", "archive.import", "archive.open"}, "stagehand archive import"},
	{"/ui/archives/web-arch", []string{"vm1", "before-arch"}, []string{"archive.restore", "archive.delete", "archive.export"}, "stagehand archive export web-arch web-arch.tar"},
	{"/ui/cleanup", []string{"config/web"}, []string{"cleanup.apply", "cleanup.view"}, "stagehand cleanup --apply"},
	{"/ui/jobs", nil, nil, "stagehand job list"},
	{"/ui/activity", nil, []string{"activity.filter", "activity.filter-object"}, "stagehand events --follow"},
	{"/ui/tokens", nil, []string{"token.create"}, "stagehand token create {name}"},
	{"/ui/admin/users", []string{"admin"}, []string{"user.create", "user.set-password", "user.open", "nav.admin.users", "nav.admin.orgs", "nav.admin.workspaces", "nav.admin.explain"}, "stagehand user create {name}"},
	{"/ui/admin/users/admin", []string{"stored_vms"}, []string{"quota.set", "user.set-password"}, "stagehand workspace set-quota --user admin"},
	{"/ui/admin/orgs", []string{"default"}, []string{"org.create", "org.add-admin", "workspace.open", "org.groups"}, "stagehand org create {name}"},
	{"/ui/admin/orgs/default/groups", nil, []string{"group.create"}, "stagehand group create default/{name}"},
	{"/ui/admin/explain", nil, []string{"auth.explain.confirm", "field.action"}, "stagehand auth explain"},
	{"/ui/admin/workspaces", []string{"default/main", "default/w2"}, []string{"workspace.create", "workspace.open"}, "stagehand workspace create {org}/{name}"},
	{"/ui/admin/workspaces/default/main", []string{"stored_vms"}, []string{"member.add", "quota.set"}, "stagehand workspace set-quota default/main"},
}

// TestObjectPagesRender: signed in as the system administrator, every
// object and admin page answers 200 with its rows (data-name) and its
// actions (data-action), each action's dialog showing its CLI line; the
// navigation leads to every section, Admin included; every interactive
// element carries data-action or data-field.
func TestObjectPagesRender(t *testing.T) {
	c := objectLab(t)
	s := c.admin(t)
	expire := time.Nanosecond // web's storage lease runs out: the cleanup lists it
	if _, err := c.Leases.Set(context.Background(), "web", lab.LeaseChange{Storage: &expire}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	for _, p := range objectPages {
		body := c.page(t, s, p.path)
		rows := rowNames(t, body)
		for _, r := range p.rows {
			if !rows[r] {
				t.Errorf("%s: no row data-name=%q (have %v)", p.path, r, rows)
			}
		}
		got := actionsOf(t, body)
		for _, a := range append(p.actions, "nav.configs", "nav.templates", "nav.networks", "nav.library", "nav.archives",
			"nav.cleanup", "nav.jobs", "nav.activity", "nav.tokens", "nav.admin") {
			if !got[a] {
				t.Errorf("%s: no element data-action=%q", p.path, a)
			}
		}
		if !strings.Contains(body, p.cli) {
			t.Errorf("%s: no CLI line %q", p.path, p.cli)
		}
		for _, tag := range []string{"button", "a", "select"} {
			for _, e := range elements(t, body, tag) {
				if e["data-action"] == "" {
					t.Errorf("%s: <%s> %q has no data-action", p.path, tag, e["#text"])
				}
			}
		}
		for _, tag := range []string{"input", "textarea"} {
			for _, e := range elements(t, body, tag) {
				if e["data-field"] == "" {
					t.Errorf("%s: <%s %v> has no data-field", p.path, tag, e)
				}
			}
		}
	}
	// The template import is an upload of parts disk, kernel and initrd.
	body := c.page(t, s, "/ui/templates")
	var parts []string
	for _, in := range elements(t, body, "input") {
		if in["type"] == "file" {
			parts = append(parts, in["data-part"])
		}
	}
	if strings.Join(parts, ",") != "disk,kernel,initrd" || !strings.Contains(body, `data-upload="multipart"`) ||
		!strings.Contains(body, `data-api-path="/api/v1/templates/upload"`) {
		t.Errorf("template import: file parts %v, or not a multipart upload to the upload route", parts)
	}
	body = c.page(t, s, "/ui/archives")
	if !strings.Contains(body, "With its snapshot tree") || !strings.Contains(body, "--with-snapshots") {
		t.Errorf("/ui/archives: archiving offers no --with-snapshots")
	}
	if !strings.Contains(body, `data-upload="raw"`) || !strings.Contains(body, `data-api-path="/api/v1/archives/upload"`) {
		t.Errorf("archive import is not a raw upload to the upload route")
	}
	// web was archived undeployed without a saved state.
	if body := c.page(t, s, "/ui/archives/web-arch"); !strings.Contains(body, `<td data-label="Saved state">no</td>`) {
		t.Errorf("/ui/archives/web-arch: no 'Saved state: no' for vm1")
	}
	// The export is a download of the bundle route, with the session.
	for _, a := range elements(t, c.page(t, s, "/ui/archives/web-arch"), "a") {
		if a["data-action"] == "archive.export" && (a["href"] != "/api/v1/archives/web-arch/bundle" || a["download"] == "") {
			t.Errorf("export link %v", a)
		}
	}
	res, _ := c.get(t, s, "/api/v1/archives/web-arch/bundle")
	if res.StatusCode != http.StatusOK || res.Trailer.Get("X-Content-SHA256") == "" {
		t.Errorf("the export link's download with the session = %d, trailer %v", res.StatusCode, res.Trailer)
	}
	// /ui/admin leads to the first section.
	res, _ = c.get(t, s, "/ui/admin")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/admin/users" {
		t.Errorf("/ui/admin = %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	// The activity log filters by object and actor.
	body = c.page(t, s, "/ui/activity?object=archive")
	for _, tr := range elements(t, body, "tr") {
		if tr["data-name"] != "" && !strings.Contains(tr["#text"], "archive") {
			t.Errorf("activity ?object=archive shows %q", tr["#text"])
		}
	}
	if !rowsExist(t, body) {
		t.Errorf("activity ?object=archive shows no event")
	}
	if !strings.Contains(body, `data-filter-object="archive"`) || !strings.Contains(body, `sse-connect="/api/v1/events?follow=1&amp;after=`) {
		t.Errorf("activity log does not follow the stream with its filter")
	}
	body = c.page(t, s, "/ui/activity?actor=nobody")
	if rowsExist(t, body) {
		t.Errorf("activity ?actor=nobody shows events")
	}
}

func rowsExist(t *testing.T, page string) bool {
	t.Helper()
	return len(rowNames(t, page)) > 0
}

// TestJobsPageShowsProgressAndCancel: a full clone held at its
// consolidation is a running job: the jobs page shows its row with a
// progress bar and a cancel (its CLI line) to the administrator who
// started it; a viewer of the workspace sees no cancel.
func TestJobsPageShowsProgressAndCancel(t *testing.T) {
	c := newConsole(t, webui.Options{})
	s := c.admin(t)
	viewer := c.member(t, "vera", "viewer")
	c.Disks.Hold()
	t.Cleanup(c.Disks.Release)
	j, err := c.Configs.StartFullClone(context.Background(), "web", "web-full", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body := c.page(t, s, "/ui/jobs")
	var row map[string]string
	for _, tr := range elements(t, body, "tr") {
		if tr["data-name"] == j.ID {
			row = tr
		}
	}
	if row == nil || row["data-state"] != "running" {
		t.Fatalf("jobs page: no running row for %s: %v", j.ID, row)
	}
	if !actionsOf(t, body)["job.cancel"] || !strings.Contains(body, "stagehand job cancel "+j.ID) ||
		!strings.Contains(body, `data-api-path="/api/v1/jobs/`+j.ID+`/cancel"`) {
		t.Errorf("the running job offers no cancel with its CLI line")
	}
	if len(elements(t, body, "progress")) == 0 {
		t.Errorf("the running job has no progress bar")
	}
	vbody := c.page(t, viewer, "/ui/jobs")
	if actionsOf(t, vbody)["job.cancel"] {
		t.Errorf("a viewer is offered the cancel")
	}
}

// TestViewerSeesNoForbiddenActionOnAnyPage: a viewer of default/main sees
// the objects of main on every page, but is offered no action that
// changes them (only their own token's create), no Admin entry, and the
// admin pages refuse them (403).
func TestViewerSeesNoForbiddenActionOnAnyPage(t *testing.T) {
	c := objectLab(t)
	viewer := c.member(t, "vera", "viewer")
	expire := time.Nanosecond
	if _, err := c.Leases.Set(context.Background(), "web", lab.LeaseChange{Storage: &expire}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	allowed := map[string]bool{"token.create": true, "token.create.confirm": true, "dialog.cancel": true,
		"session.logout": true, "workspace.switch": true, "cleanup.view": true, "activity.filter": true,
		"activity.filter-object": true, "field.workspace": true, "field.max_role": true}
	for _, p := range objectPages {
		if strings.HasPrefix(p.path, "/ui/admin") {
			continue
		}
		res, body := c.get(t, viewer, p.path)
		if res.StatusCode != http.StatusOK {
			t.Errorf("viewer: GET %s = %d: %.200s", p.path, res.StatusCode, body)
			continue
		}
		for a := range actionsOf(t, body) {
			if allowed[a] || strings.HasPrefix(a, "nav.") || strings.HasSuffix(a, ".open") {
				continue
			}
			t.Errorf("viewer: %s offers %s", p.path, a)
		}
		if actionsOf(t, body)["nav.admin"] {
			t.Errorf("viewer: %s shows the Admin entry", p.path)
		}
	}
	// The viewer sees main's objects: the cleanup lists web, which they
	// may not delete.
	if !rowNames(t, c.page(t, viewer, "/ui/cleanup"))["config/web"] {
		t.Errorf("viewer: the cleanup does not list web")
	}
	for _, p := range []string{"/ui/admin", "/ui/admin/users", "/ui/admin/users/vera", "/ui/admin/orgs", "/ui/admin/workspaces", "/ui/admin/workspaces/default/main", "/ui/admin/explain"} {
		if res, body := c.get(t, viewer, p); res.StatusCode != http.StatusForbidden {
			t.Errorf("viewer: GET %s = %d, want 403: %.200s", p, res.StatusCode, body)
		}
	}
	// w2 is not theirs to see: its admin page is 404, as from the API.
	if res, _ := c.get(t, viewer, "/ui/admin/workspaces/default/w2"); res.StatusCode != http.StatusNotFound {
		t.Errorf("viewer: GET w2's admin page = %d, want 404", res.StatusCode)
	}
}

// TestAdminPagesForAWorkspaceAdmin: the admin role of a workspace opens
// the workspaces page (its workspace only) and manages its members, but
// neither its quota (its organization's admins') nor users nor
// organizations (403).
func TestAdminPagesForAWorkspaceAdmin(t *testing.T) {
	c := objectLab(t)
	wa := c.member(t, "wanda", "admin")
	c.member(t, "vera", "viewer")
	body := c.page(t, wa, "/ui/configs")
	if !actionsOf(t, body)["nav.admin"] {
		t.Errorf("a workspace admin has no Admin entry")
	}
	body = c.page(t, wa, "/ui/admin/workspaces")
	if rows := rowNames(t, body); !rows["default/main"] || rows["default/w2"] {
		t.Errorf("workspace admin's workspaces = %v, want default/main only", rows)
	}
	if actionsOf(t, body)["workspace.create"] {
		t.Errorf("a workspace admin is offered workspace.create")
	}
	body = c.page(t, wa, "/ui/admin/workspaces/default/main")
	got := actionsOf(t, body)
	if !got["member.add"] || !got["member.remove"] || got["quota.set"] || got["workspace.delete"] {
		t.Errorf("workspace admin's actions on main = %v, want member add/remove without quota or delete", got)
	}
	for _, tr := range elements(t, body, "tr") {
		if tr["data-name"] == "vera" && tr["data-role"] != "viewer" {
			t.Errorf("vera's row: %v", tr)
		}
	}
	for _, p := range []string{"/ui/admin/users", "/ui/admin/orgs", "/ui/admin/workspaces/default/w2"} {
		res, _ := c.get(t, wa, p)
		if res.StatusCode != http.StatusForbidden && res.StatusCode != http.StatusNotFound {
			t.Errorf("workspace admin: GET %s = %d, want 403/404", p, res.StatusCode)
		}
	}
	if res, _ := c.get(t, wa, "/ui/admin/users"); res.StatusCode != http.StatusForbidden {
		t.Errorf("workspace admin: users page = %d, want 403", res.StatusCode)
	}
}

// cells returns the pool grid's cells of page by address: state and
// holder.
func cells(t *testing.T, page string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for _, s := range elements(t, page, "span") {
		if strings.Contains(" "+s["class"]+" ", " cell ") {
			out[s["data-name"]] = [2]string{s["data-state"], s["data-holder"]}
		}
	}
	return out
}

// TestPoolGridShowsHolders: the grid of lan draws every pool address: for
// a member of main, web's address is held by web/vm1/nic0, secret's (in
// w2) is held by "(hidden)", the rest are free; the administrator sees
// both families by name; a fenced deploy's external address is drawn as
// the fence's.
func TestPoolGridShowsHolders(t *testing.T) {
	c := objectLab(t)
	s := c.admin(t)
	bob := c.member(t, "bob", "author")

	grid := cells(t, c.page(t, bob, "/ui/networks/lan"))
	if len(grid) != 90 {
		t.Errorf("grid has %d cells, want the 90 of pool 10.0.0.10-10.0.0.99", len(grid))
	}
	want := map[string][2]string{
		"10.0.0.10": {"held", "web/vm1/nic0, web-lib/vm1/nic0"}, // the family: web and its captured entry
		"10.0.0.11": {"hidden", "(hidden)"},
		"10.0.0.12": {"free", ""},
		"10.0.0.99": {"free", ""},
	}
	for ip, w := range want {
		if grid[ip] != w {
			t.Errorf("bob's grid: %s = %v, want %v", ip, grid[ip], w)
		}
	}
	page := c.page(t, bob, "/ui/networks/lan")
	if strings.Contains(page, "secret") {
		t.Errorf("bob's network page names secret")
	}

	grid = cells(t, c.page(t, s, "/ui/networks/lan"))
	if grid["10.0.0.11"] != [2]string{"held", "secret/vm1/nic0"} {
		t.Errorf("admin's grid: 10.0.0.11 = %v", grid["10.0.0.11"])
	}

	cv, err := c.Deploy(context.Background(), "web", lab.DeployOptions{Fenced: true})
	if err != nil {
		t.Fatal(err)
	}
	ext := cv.VMs[0].NICs[0].ExternalIP
	if ext == "" {
		t.Fatalf("fenced deploy gave no external address: %+v", cv.VMs[0].NICs[0])
	}
	grid = cells(t, c.page(t, bob, "/ui/networks/lan"))
	if st := grid[ext]; st[0] != "external" || st[1] == "" || st[1] == "(hidden)" {
		t.Errorf("bob's grid: external %s = %v, want external with its fence", ext, st)
	}
	if grid["10.0.0.10"][0] != "held" {
		t.Errorf("bob's grid: web's address while fenced = %v", grid["10.0.0.10"])
	}
}

// TestOIDCSignInLandsOnNext: a browser that starts the single sign-on
// from the sign-in page of a console page comes back, through the
// issuer, to a page of the daemon's origin that goes on to that console
// page; with the session cookie it was given, the page then loads (not
// the sign-in page again).
func TestOIDCSignInLandsOnNext(t *testing.T) {
	const clientID, secret = "webui-test", "webui test secret"
	l := apitest.New(t).Seed(t)
	u := l.User(t, "alice", true)
	u.Email = "alice@example.test"
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error { return tx.Users().Update(u) }); err != nil {
		t.Fatal(err)
	}
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.ServeUI(webui.New(webui.LabOf(l.Service), webui.Options{OIDC: true}))
	srv := httptest.NewUnstartedServer(h)
	base := "http://" + srv.Listener.Addr().String()
	issuer := oidctest.Start(t, oidctest.Options{ClientID: clientID, ClientSecret: secret,
		User: oidctest.User{Subject: "alice-1", Email: "alice@example.test", EmailVerified: true}})
	login, err := api.NewOIDCLogin(issuer.URL, base+api.OIDCCallbackPath)
	if err != nil {
		t.Fatal(err)
	}
	h.ServeOIDC(login)
	srv.Start()
	t.Cleanup(func() { h.Drain(); srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := oidclogin.New(ctx, oidclogin.Config{Issuer: issuer.URL, ClientID: clientID, ClientSecret: secret,
		RedirectURL: base + api.OIDCCallbackPath, Scopes: []string{"email"}})
	if err != nil {
		t.Fatal(err)
	}
	login.Ready(p)

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	// The sign-in page of /ui/configs/web links the single sign-on with
	// that page as next.
	res, err := browser.Get(base + "/ui/configs/web")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var sso string
	for _, a := range elements(t, string(b), "a") {
		if a["data-action"] == "session.oidc" {
			sso = a["href"]
		}
	}
	if sso != api.OIDCLoginPath+"?next="+url.QueryEscape("/ui/configs/web") {
		t.Fatalf("sign-in page's single sign-on link = %q", sso)
	}
	res, err = browser.Get(base + sso)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.Request.URL.Path != api.OIDCCallbackPath || res.StatusCode != http.StatusOK ||
		!strings.Contains(string(b), `<meta http-equiv="refresh" content="0;url=/ui/configs/web">`) {
		t.Fatalf("callback = %s %d %s, want a page going on to /ui/configs/web", res.Request.URL, res.StatusCode, b)
	}
	bu, _ := url.Parse(base + "/ui/configs/web")
	var session bool
	for _, ck := range jar.Cookies(bu) {
		session = session || ck.Name == api.SessionCookie && strings.HasPrefix(ck.Value, "shs_")
	}
	if !session {
		t.Fatalf("no session cookie for the console after the callback")
	}
	// The page the refresh goes to loads with the cookie, no redirect.
	noFollow := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = noFollow.Get(base + "/ui/configs/web")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `data-live-config="web"`) {
		t.Errorf("landing page = %d (Location %q): %.300s", res.StatusCode, res.Header.Get("Location"), b)
	}
}
