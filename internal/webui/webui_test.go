package webui_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/net/html"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/lab"
	"stagehand/internal/store"
	"stagehand/internal/webui"
)

// console is the web console over a real lab (apitest: SQLite, qemu-img),
// mounted on the real API as the daemon mounts it: requests without a
// session are not trusted.
type console struct {
	*apitest.Lab
	srv *httptest.Server
}

func newConsole(t testing.TB, opts webui.Options) *console {
	t.Helper()
	l := apitest.New(t).Seed(t)
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if opts.ConsoleLinks == nil {
		opts.ConsoleLinks = h // as the daemon wires it
	}
	h.ServeUI(webui.New(webui.LabOf(l.Service), opts))
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	return &console{Lab: l, srv: srv}
}

// member makes user a member of default/main with role and returns a
// session token of theirs.
func (c *console) member(t testing.TB, user, role string) string {
	t.Helper()
	u := c.User(t, user, false)
	err := c.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: role})
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.Token(t, user, apitest.TokenOptions{Session: true})
}

// get sends GET path with the session cookie session ("" for none),
// without following redirects.
func (c *console) get(t testing.TB, session, path string) (*http.Response, string) {
	t.Helper()
	return c.send(t, session, http.MethodGet, path, nil)
}

// send sends method path with body (JSON, or nil) and the session cookie
// session ("" for none), without following redirects.
func (c *console) send(t testing.TB, session, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if session != "" {
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: session})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// elements returns the elements of page named tag, with their attributes.
func elements(t *testing.T, page, tag string) []map[string]string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
			}
			attrs["#text"] = text(n)
			out = append(out, attrs)
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch)
		}
	}
	walk(doc)
	return out
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

// actions returns the data-action of every button of page.
func actions(t *testing.T, page string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, b := range elements(t, page, "button") {
		out[b["data-action"]] = true
	}
	return out
}

// TestPagesRenderForAnAuthorizedUser: the system administrator, signed in
// with a session cookie, gets the list (with the seeded configuration as
// a row, its state and workspace), the configuration's page (VM, fence
// map with its pool address, disk layers from the real qcow2 chain,
// history, every action of an undeployed configuration) and the console
// page; fragments answer for live updates.
func TestPagesRenderForAnAuthorizedUser(t *testing.T) {
	c := newConsole(t, webui.Options{})
	c.User(t, "admin", true)
	s := c.Token(t, "admin", apitest.TokenOptions{Session: true})

	res, body := c.get(t, s, "/ui/configs")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/configs = %d: %s", res.StatusCode, body)
	}
	rows := elements(t, body, "tr")
	var web map[string]string
	for _, r := range rows {
		if r["data-name"] == "web" {
			web = r
		}
	}
	if web == nil {
		t.Fatalf("the list has no row data-name=web:\n%s", body)
	}
	if web["data-state"] != "undeployed" || !strings.Contains(web["#text"], "main") {
		t.Errorf("row of web = %q (state %q), want undeployed in main", web["#text"], web["data-state"])
	}
	if !actions(t, body)["config.create"] {
		t.Errorf("the administrator is not offered config.create on the list")
	}
	if !strings.Contains(body, `sse-connect="/api/v1/events?follow=1&amp;after=`) {
		t.Errorf("the list does not follow the event stream from the newest event")
	}

	res, body = c.get(t, s, "/ui/configs/web")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/configs/web = %d: %s", res.StatusCode, body)
	}
	got := actions(t, body)
	for _, a := range []string{"config.deploy", "config.clone", "config.change-ips", "config.capture", "config.archive",
		"config.share", "config.delete", "config.lease.storage", "config.delete.confirm"} {
		if !got[a] {
			t.Errorf("config page: no button %s (have %v)", a, got)
		}
	}
	for _, want := range []string{"vm1", "10.0.0.10", "tmpl", "writable", "frozen", "<strong>create</strong>"} {
		if !strings.Contains(body, want) {
			t.Errorf("config page lacks %q", want)
		}
	}
	if !strings.Contains(body, "stagehand config clone web {name}") {
		t.Errorf("the clone dialog does not show its CLI line")
	}
	if len(elements(t, body, "svg")) != 1 {
		t.Errorf("the config page has no disk tree SVG")
	}

	for _, part := range []string{"summary", "vms", "disks", "history"} {
		res, body = c.get(t, s, "/ui/configs/web/part/"+part)
		if res.StatusCode != http.StatusOK || strings.Contains(body, "<html") {
			t.Errorf("part %s = %d (a fragment expected): %.200s", part, res.StatusCode, body)
		}
	}
	res, body = c.get(t, s, "/ui/configs/web/row")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `data-name="web"`) {
		t.Errorf("row fragment = %d: %.300s", res.StatusCode, body)
	}

	res, body = c.get(t, s, "/ui/configs/web/vms/vm1/console")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("console page = %d: %s", res.StatusCode, body)
	}
	for _, want := range []string{"/api/v1/configs/web/vms/vm1/serial/ws", "/api/v1/configs/web/vms/vm1/vnc/ws"} {
		if !strings.Contains(body, want) {
			t.Errorf("console page does not point at %s", want)
		}
	}
}

// TestViewerSeesNoForbiddenAction: a viewer of the workspace sees the
// configuration but is offered none of the actions a viewer may not do,
// on the page or in its summary fragment; an author is offered them.
func TestViewerSeesNoForbiddenAction(t *testing.T) {
	c := newConsole(t, webui.Options{})
	viewer := c.member(t, "vera", "viewer")
	author := c.member(t, "arthur", "admin")

	res, body := c.get(t, viewer, "/ui/configs/web")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("viewer's config page = %d: %s", res.StatusCode, body)
	}
	for _, page := range []string{body, func() string { _, b := c.get(t, viewer, "/ui/configs/web/part/summary"); return b }()} {
		for a := range actions(t, page) {
			if strings.HasPrefix(a, "config.") {
				t.Errorf("the viewer is offered %s", a)
			}
		}
	}
	_, list := c.get(t, viewer, "/ui/configs")
	if actions(t, list)["config.create"] {
		t.Errorf("the viewer is offered config.create")
	}

	_, body = c.get(t, author, "/ui/configs/web")
	got := actions(t, body)
	for _, a := range []string{"config.deploy", "config.delete"} {
		if !got[a] {
			t.Errorf("the workspace admin is not offered %s", a)
		}
	}
}

// TestInvisibleConfigIsNotFound: a user who is no member of the
// configuration's workspace gets 404 for its page, its parts, its row
// and its console, as from the API, and an empty list.
func TestInvisibleConfigIsNotFound(t *testing.T) {
	c := newConsole(t, webui.Options{})
	c.User(t, "olga", false)
	s := c.Token(t, "olga", apitest.TokenOptions{Session: true})
	for _, p := range []string{"/ui/configs/web", "/ui/configs/web/part/vms", "/ui/configs/web/row", "/ui/configs/web/vms/vm1/console", "/ui/configs/nothing"} {
		res, body := c.get(t, s, p)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s by a stranger = %d, want 404: %.200s", p, res.StatusCode, body)
		}
	}
	res, body := c.get(t, s, "/ui/configs")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("list = %d", res.StatusCode)
	}
	for _, r := range elements(t, body, "tr") {
		if r["data-name"] != "" {
			t.Errorf("the stranger's list shows %q", r["data-name"])
		}
	}
}

// TestSignInRequired: without a session (or with a revoked one) every
// page but the sign-in page and the static files sends the browser to
// the sign-in page, with the page as next; the sign-in page posts to
// the API's login and shows the OIDC button only when configured.
func TestSignInRequired(t *testing.T) {
	c := newConsole(t, webui.Options{OIDC: true})
	revoked := c.Token(t, "rex", apitest.TokenOptions{Session: true, Revoked: true})
	for _, s := range []string{"", revoked} {
		for _, p := range []string{"/", "/ui/configs", "/ui/configs/web", "/ui/configs/web/vms/vm1/console", "/ui/whatever"} {
			res, _ := c.get(t, s, p)
			loc := res.Header.Get("Location")
			if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, webui.SignInPath+"?next=") {
				t.Errorf("GET %s without a good session = %d Location %q, want 303 to the sign-in page", p, res.StatusCode, loc)
				continue
			}
			if next, _ := url.QueryUnescape(strings.TrimPrefix(loc, webui.SignInPath+"?next=")); next != p {
				t.Errorf("GET %s: next = %q", p, next)
			}
		}
	}
	res, body := c.get(t, "", "/ui/login?next=/ui/configs/web")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("sign-in page = %d", res.StatusCode)
	}
	if !strings.Contains(body, `data-next="/ui/configs/web"`) || !strings.Contains(body, `href="/auth/oidc/login?next=%2Fui%2Fconfigs%2Fweb"`) {
		t.Errorf("sign-in page lacks its next or its OIDC link:\n%s", body)
	}
	// next must stay on this site.
	_, body = c.get(t, "", "/ui/login?next=//evil.example/x")
	if !strings.Contains(body, `data-next="/ui/configs"`) {
		t.Errorf("an off-site next was kept")
	}
	res, _ = c.get(t, "", "/ui/assets/app.js")
	if res.StatusCode != http.StatusOK {
		t.Errorf("static file without a session = %d, want 200", res.StatusCode)
	}
	res, _ = c.get(t, "", "/ui/assets/vendor/.gitkeep")
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("a dot file of the assets = %d, want 404", res.StatusCode)
	}
	// Without OIDC, no button.
	c2 := newConsole(t, webui.Options{})
	_, body = c2.get(t, "", "/ui/login")
	if strings.Contains(body, "/auth/oidc/login") {
		t.Errorf("the sign-in page offers OIDC that is not configured")
	}
	// The API keeps answering JSON 401 to a request without credentials.
	res, _ = c.get(t, "", "/api/v1/configs")
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/configs without credentials = %d, want 401", res.StatusCode)
	}
}

// TestEveryInteractiveElementHasAnAction: on every page, each button,
// link and select carries data-action, each input a data-field, and
// every row of an object list a data-name.
func TestEveryInteractiveElementHasAnAction(t *testing.T) {
	c := newConsole(t, webui.Options{OIDC: true})
	c.User(t, "admin", true)
	s := c.Token(t, "admin", apitest.TokenOptions{Session: true})
	if _, err := c.Deploy(context.Background(), "web", lab.DeployOptions{Fenced: true}); err != nil {
		t.Fatal(err)
	}
	pages := map[string]string{}
	for _, p := range []string{"/ui/configs", "/ui/configs/web", "/ui/configs/web/vms/vm1/console", "/ui/configs/nothing"} {
		_, pages[p] = c.get(t, s, p)
	}
	_, pages["/ui/login"] = c.get(t, "", "/ui/login")
	for p, body := range pages {
		for _, tag := range []string{"button", "a", "select"} {
			for _, e := range elements(t, body, tag) {
				if e["data-action"] == "" {
					t.Errorf("%s: <%s> %q has no data-action", p, tag, e["#text"])
				}
			}
		}
		for _, tag := range []string{"input", "textarea"} {
			for _, e := range elements(t, body, tag) {
				if e["data-field"] == "" {
					t.Errorf("%s: <%s %v> has no data-field", p, tag, e)
				}
			}
		}
	}
	// Rows of object lists carry data-name.
	row := regexp.MustCompile(`(?s)<tbody>(.*?)</tbody>`)
	for _, p := range []string{"/ui/configs", "/ui/configs/web"} {
		for _, m := range row.FindAllStringSubmatch(pages[p], -1) {
			for _, tr := range elements(t, "<table>"+m[1]+"</table>", "tr") {
				if tr["data-name"] == "" {
					t.Errorf("%s: a row without data-name: %q", p, tr["#text"])
				}
			}
		}
	}
	// The deployed, fenced configuration shows its external addresses and
	// offers undeploy, not deploy.
	got := actions(t, pages["/ui/configs/web"])
	if !got["config.undeploy"] || got["config.deploy"] || got["config.delete"] {
		t.Errorf("deployed config's actions = %v, want undeploy without deploy or delete", got)
	}
	if !strings.Contains(pages["/ui/configs/web"], "↔") {
		t.Errorf("the fence map shows no internal ↔ external pair")
	}
}

// TestAssetsMissing: a build without the vendored JavaScript says so on
// every page, and the console page shows the message instead of the
// consoles.
func TestAssetsMissing(t *testing.T) {
	sub, err := fs.Sub(webuiAssets(t), "assets")
	if err != nil {
		t.Fatal(err)
	}
	c := newConsole(t, webui.Options{Assets: sub})
	c.User(t, "admin", true)
	s := c.Token(t, "admin", apitest.TokenOptions{Session: true})
	for _, p := range []string{"/ui/configs", "/ui/configs/web/vms/vm1/console"} {
		_, body := c.get(t, s, p)
		if !strings.Contains(body, "web assets not built: run scripts/build-web.sh") {
			t.Errorf("%s does not say the assets are not built", p)
		}
		if strings.Contains(body, `src="/ui/assets/vendor/`) {
			t.Errorf("%s still loads vendored scripts that are missing", p)
		}
	}
}

// webuiAssets is a tree with the console's own files and no vendored
// ones, as a checkout where scripts/build-web.sh never ran.
func webuiAssets(t *testing.T) fstest.MapFS {
	t.Helper()
	return fstest.MapFS{
		"assets/app.css":           {Data: []byte("body{}")},
		"assets/app.js":            {Data: []byte("")},
		"assets/console.js":        {Data: []byte("")},
		"assets/vendor/.gitkeep":   {Data: nil},
		"assets/vendor/.gitignore": {Data: []byte("*\n")},
	}
}
