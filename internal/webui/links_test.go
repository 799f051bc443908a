package webui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"stagehand/internal/client"
	"stagehand/internal/webui"
)

// TestConsoleLinkPage: a console link's page (/console/CONFIG/VM?console_link=…)
// is served without a session only while its link is good, and only for
// the VM it opens: it holds that VM's consoles and nothing else (no
// navigation, no user); a missing, forged, revoked or expired link, or
// another VM's path, is a 404 that names nothing. The VM's console page
// offers "Create console link" to a user who may share the configuration
// (not to one who may only use the console) and lists their links with a
// revoke on each active one.
func TestConsoleLinkPage(t *testing.T) {
	c := newConsole(t, webui.Options{})
	ctx := context.Background()
	author := c.member(t, "author", "author")
	api := client.New(c.srv.URL, client.WithToken(author))
	const consolePath = "/ui/configs/web/vms/vm1/console"

	page := c.page(t, author, consolePath)
	if a := actions(t, page); !a["console.link"] || !a["console.link.confirm"] {
		t.Errorf("an author's console page lacks console.link (actions %v)", a)
	}
	if !strings.Contains(page, "stagehand vm console-link create web vm1") {
		t.Errorf("the console.link dialog does not show its CLI line")
	}

	link, err := api.ConsoleLinks().Create(ctx, "web", "vm1", "1h")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link.URL)
	if err != nil || u.Path != "/console/web/vm1" || u.Query().Get("console_link") == "" {
		t.Fatalf("the link's URL is %q, want /console/web/vm1?console_link=…", link.URL)
	}
	token := u.Query().Get("console_link")

	res, body := c.get(t, "", link.URL)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET the link without a session: %d %.300s", res.StatusCode, body)
	}
	if !strings.Contains(body, `data-serial-ws="/api/v1/configs/web/vms/vm1/serial/ws"`) {
		t.Errorf("the link's page holds no serial console of web/vm1")
	}
	for _, not := range []string{`data-action="nav.configs"`, `data-action="session.logout"`, `data-action="console.link"`, "Console links"} {
		if strings.Contains(body, not) {
			t.Errorf("the link's page shows %s", not)
		}
	}

	// What the link does not open.
	notFound := func(why, path string) {
		t.Helper()
		res, body := c.get(t, "", path)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: GET %s = %d, want 404", why, path, res.StatusCode)
		}
		if strings.Contains(body, "web") || strings.Contains(body, "serial/ws") {
			t.Errorf("%s: the 404 page names what it hides: %.300s", why, body)
		}
	}
	notFound("no link", "/console/web/vm1")
	notFound("a forged link", "/console/web/vm1?console_link="+url.QueryEscape(token[:len(token)-4]+"AAAA"))
	notFound("another VM", "/console/web/vm2?console_link="+url.QueryEscape(token))
	notFound("another configuration", "/console/nothing/vm1?console_link="+url.QueryEscape(token))
	// The link signs no one in: the console's pages still want a session.
	if res, _ := c.get(t, "", "/ui/configs?console_link="+url.QueryEscape(token)); res.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /ui/configs with a link and no session: %d, want 303 to the sign-in page", res.StatusCode)
	}

	// The VM's console page lists the link, with a revoke.
	page = c.page(t, author, consolePath)
	if !rowNames(t, page)[link.ID] || !actions(t, page)["console.link.revoke"] {
		t.Errorf("the console page does not list link %s with a revoke", link.ID)
	}
	if err := api.ConsoleLinks().Revoke(ctx, link.ID); err != nil {
		t.Fatal(err)
	}
	notFound("a revoked link", link.URL)
	page = c.page(t, author, consolePath)
	for _, tr := range elements(t, page, "tr") {
		if tr["data-name"] == link.ID && tr["data-state"] != "revoked" {
			t.Errorf("after the revoke the console page shows link %s %s", link.ID, tr["data-state"])
		}
	}
	if actions(t, page)["console.link.revoke"] {
		t.Errorf("a revoked link is still offered a revoke")
	}

	short, err := api.ConsoleLinks().Create(ctx, "web", "vm1", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := c.get(t, "", short.URL); res.StatusCode != http.StatusOK {
		t.Fatalf("a fresh 1 s link: %d, want 200", res.StatusCode)
	}
	time.Sleep(1100 * time.Millisecond)
	notFound("an expired link", short.URL)

	// A user who may use the console but not share the configuration.
	user := c.member(t, "user", "user")
	page = c.page(t, user, consolePath)
	if a := actions(t, page); a["console.link"] {
		t.Errorf("a user without config.share is offered console.link")
	}
	if strings.Contains(page, "Console links") {
		t.Errorf("a user without links or config.share sees the links section")
	}
}
