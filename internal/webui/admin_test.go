package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"golang.org/x/net/html"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/store"
	"stagehand/internal/webui"
)

// pageForm is an action's form on a page: the request it sends and its
// fields as the page fills them.
type pageForm struct {
	method, path string
	fields       map[string]string // data-field → value
	kinds        map[string]string // data-field → data-kind
}

// formOf returns the form of action name on page whose API path ends
// with suffix; the test fails when there is none.
func formOf(t *testing.T, page, name, suffix string) pageForm {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var found *pageForm
	var walk func(n *html.Node, f *pageForm)
	walk = func(n *html.Node, f *pageForm) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, x := range n.Attr {
				a[x.Key] = x.Val
			}
			switch {
			case n.Data == "form" && a["data-action-name"] == name && strings.HasSuffix(a["data-api-path"], suffix) && found == nil:
				found = &pageForm{method: a["data-api-method"], path: a["data-api-path"], fields: map[string]string{}, kinds: map[string]string{}}
				f = found
			case f != nil && n.Data == "input" && a["data-field"] != "":
				f.fields[a["data-field"]], f.kinds[a["data-field"]] = a["value"], a["data-kind"]
			case f != nil && n.Data == "select" && a["data-field"] != "":
				f.fields[a["data-field"]] = selected(n)
			}
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch, f)
		}
	}
	walk(doc, nil)
	if found == nil {
		t.Fatalf("no form of %s ending %q on the page", name, suffix)
	}
	return *found
}

// selected is the value a select starts with: its selected option, else
// its first.
func selected(sel *html.Node) string {
	first := ""
	for o := sel.FirstChild; o != nil; o = o.NextSibling {
		if o.Type != html.ElementNode || o.Data != "option" {
			continue
		}
		v := text(o)
		for _, a := range o.Attr {
			if a.Key == "selected" {
				return v
			}
		}
		if first == "" {
			first = v
		}
	}
	return first
}

// submit sends form as the session would from its dialog (app.js): the
// page's field values, changed by set, as a JSON body (numbers as
// numbers, empty ones left out, confirmations not sent; none for a
// DELETE). It returns the API's status and body.
func (c *console) submit(t *testing.T, session string, f pageForm, set map[string]string) (int, string) {
	t.Helper()
	var body io.Reader
	if f.method != http.MethodDelete {
		m := map[string]any{}
		for k, v := range f.fields {
			if s, ok := set[k]; ok {
				v = s
			}
			switch kind := f.kinds[k]; {
			case kind == "confirm" || v == "" && kind != "":
			case kind == "number":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("field %s: %v", k, err)
				}
				m[k] = n
			default:
				m[k] = v
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	res, out := c.send(t, session, f.method, f.path, body)
	return res.StatusCode, out
}

// ok submits f and fails unless the API answers 2xx.
func (c *console) ok(t *testing.T, session string, f pageForm, set map[string]string) string {
	t.Helper()
	status, body := c.submit(t, session, f, set)
	if status/100 != 2 {
		t.Fatalf("%s %s = %d: %s", f.method, f.path, status, body)
	}
	return body
}

// orgAdmin makes user (new, in no workspace) an admin of organization
// default and returns a session of theirs.
func (c *console) orgAdmin(t *testing.T, user string) string {
	t.Helper()
	u := c.User(t, user, false)
	err := c.Store().Update(context.Background(), func(tx store.Tx) error {
		o, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		return tx.Orgs().AddAdmin(o.ID, u.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.Token(t, user, apitest.TokenOptions{Session: true})
}

// groupMembers reads the members of group default/name, or fails.
func (c *console) groupMembers(t *testing.T, name string) ([]string, error) {
	t.Helper()
	var out []string
	err := c.Store().View(context.Background(), func(tx store.Tx) error {
		o, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		g, err := tx.Groups().Get(o.ID, name)
		if err != nil {
			return err
		}
		us, err := tx.Groups().Members(g.ID)
		for _, u := range us {
			out = append(out, u.Name)
		}
		return err
	})
	return out, err
}

// groupActions are the actions of the groups page.
var groupActions = []string{"group.create", "group.add-member", "group.remove-member", "group.delete"}

// TestGroupsPage: an organization's admin (not a system administrator)
// creates a group, adds and removes a member and deletes it with the
// requests the groups page's forms make, each changing the store and the
// page; a member of one of its workspaces sees the groups and their
// members without any action; a user of none gets 404.
func TestGroupsPage(t *testing.T) {
	c := newConsole(t, webui.Options{})
	oa := c.orgAdmin(t, "olga")
	vera := c.member(t, "vera", "viewer")
	const page = "/ui/admin/orgs/default/groups"
	if !actionsOf(t, c.page(t, oa, "/ui/admin/orgs"))["org.groups"] {
		t.Errorf("the organizations page does not lead to the groups")
	}

	c.ok(t, oa, formOf(t, c.page(t, oa, page), "group.create", "/groups"), map[string]string{"name": "ops"})
	if _, err := c.groupMembers(t, "ops"); err != nil {
		t.Fatalf("group ops after its create: %v", err)
	}
	body := c.page(t, oa, page)
	if !rowNames(t, body)["ops"] {
		t.Fatalf("the groups page does not list ops")
	}
	c.ok(t, oa, formOf(t, body, "group.add-member", "/groups/default/ops/members"), map[string]string{"user": "vera"})
	if m, err := c.groupMembers(t, "ops"); err != nil || strings.Join(m, ",") != "vera" {
		t.Fatalf("ops's members after add-member vera = %v, %v", m, err)
	}

	body = c.page(t, oa, page)
	got := actionsOf(t, body)
	for _, a := range groupActions {
		if !got[a] {
			t.Errorf("org admin: groups page lacks %s", a)
		}
	}
	if !strings.Contains(body, "stagehand group remove-member default/ops vera") || !strings.Contains(body, "removes the shares made to it") {
		t.Errorf("the groups page lacks remove-member's CLI line or the delete's consequence")
	}
	members := map[string]bool{}
	for _, li := range elements(t, body, "li") {
		members[li["data-name"]] = true
	}
	if !members["vera"] {
		t.Errorf("the groups page does not list ops's member vera")
	}

	// A member of default/main sees the list, without actions.
	vbody := c.page(t, vera, page)
	if !rowNames(t, vbody)["ops"] || !strings.Contains(vbody, `<li data-name="vera">`) {
		t.Errorf("vera does not see ops and its member")
	}
	for _, a := range groupActions {
		if actionsOf(t, vbody)[a] {
			t.Errorf("vera is offered %s", a)
		}
	}
	c.User(t, "nobody", false)
	if res, _ := c.get(t, c.Token(t, "nobody", apitest.TokenOptions{Session: true}), page); res.StatusCode != http.StatusNotFound {
		t.Errorf("a user of no workspace: GET %s = %d, want 404", page, res.StatusCode)
	}

	c.ok(t, oa, formOf(t, body, "group.remove-member", "/members/vera"), nil)
	if m, err := c.groupMembers(t, "ops"); err != nil || len(m) != 0 {
		t.Fatalf("ops's members after remove-member = %v, %v", m, err)
	}
	c.ok(t, oa, formOf(t, body, "group.delete", "/groups/default/ops"), nil)
	if _, err := c.groupMembers(t, "ops"); err == nil {
		t.Fatalf("ops still exists after its delete")
	}
	if rowNames(t, c.page(t, oa, page))["ops"] {
		t.Errorf("the groups page lists the deleted ops")
	}
}

// quotaCells returns the quota table of page: resource → [used, limit].
func quotaCells(t *testing.T, page string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for _, row := range []string{"stored_vms", "deployed_vms", "vcpus", "memory_mib", "disk_gib"} {
		i := strings.Index(page, `<tr data-name="`+row+`">`)
		if i < 0 {
			t.Fatalf("no quota row %s", row)
		}
		tds := elements(t, "<table>"+page[i:i+strings.Index(page[i:], "</tr>")+5]+"</table>", "td")
		out[row] = [2]string{tds[1]["#text"], tds[2]["#text"]}
	}
	return out
}

// TestUserQuota: the system administrator sets a user's quota with the
// request of the user page's form; the store holds it, the user page
// shows it with the use (vera's one stored VM) and the users page sums it
// up; the workspace page's form (the same action) sets a workspace's.
// Neither an organization's admin nor a member opens a user's page.
func TestUserQuota(t *testing.T) {
	c := newConsole(t, webui.Options{})
	s := c.admin(t)
	vera := c.member(t, "vera", "user")
	oa := c.orgAdmin(t, "olga")
	err := c.Store().Update(context.Background(), func(tx store.Tx) error { // vera owns web
		u, err := tx.Users().Get("vera")
		if err != nil {
			return err
		}
		cfg, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		return tx.Objects().SetOwnership(store.ObjectConfig, cfg.ID, cfg.WorkspaceID, u.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !actionsOf(t, c.page(t, s, "/ui/admin/users"))["user.open"] {
		t.Errorf("the users page does not lead to a user's page")
	}
	body := c.page(t, s, "/ui/admin/users/vera")
	for _, a := range []string{"quota.set", "user.set-password", "user.disable"} {
		if !actionsOf(t, body)[a] {
			t.Errorf("vera's page lacks %s", a)
		}
	}
	if !strings.Contains(body, "stagehand workspace set-quota --user vera") {
		t.Errorf("vera's page lacks the set-quota CLI line")
	}
	c.ok(t, s, formOf(t, body, "quota.set", "/quotas"), map[string]string{"stored_vms": "3", "vcpus": "8"})
	var q *store.Quota
	err = c.Store().View(context.Background(), func(tx store.Tx) error {
		u, err := tx.Users().Get("vera")
		if err != nil {
			return err
		}
		q, err = tx.Quotas().Get(store.QuotaScopeUser, u.ID)
		return err
	})
	if err != nil || q.StoredVMs != 3 || q.VCPUs != 8 || q.DeployedVMs != 0 {
		t.Fatalf("vera's quota after the form = %+v, %v", q, err)
	}
	cells := quotaCells(t, c.page(t, s, "/ui/admin/users/vera"))
	if cells["stored_vms"] != [2]string{"1", "3"} || cells["vcpus"][1] != "8" || cells["deployed_vms"][1] != "none" {
		t.Errorf("vera's quota table = %v, want stored VMs 1 of 3, vCPUs limit 8, deployed none", cells)
	}
	if !strings.Contains(c.page(t, s, "/ui/admin/users"), "Stored VMs 1/3") {
		t.Errorf("the users page does not sum up vera's quota")
	}

	ws := c.page(t, s, "/ui/admin/workspaces/default/main")
	c.ok(t, s, formOf(t, ws, "quota.set", "/quotas"), map[string]string{"deployed_vms": "2"})
	if cells := quotaCells(t, c.page(t, s, "/ui/admin/workspaces/default/main")); cells["deployed_vms"][1] != "2" {
		t.Errorf("main's quota after the form: %v", cells)
	}

	for _, who := range []string{oa, vera} {
		if res, _ := c.get(t, who, "/ui/admin/users/vera"); res.StatusCode != http.StatusForbidden {
			t.Errorf("GET vera's page as a non-system-administrator = %d, want 403", res.StatusCode)
		}
	}
}

// TestExplainPage: the explain page's form asks the API's auth explain,
// whose answer says whether a user may do an action and why; it is
// offered to the system administrator and an organization's admin, and
// refused (403, no tab) to a workspace's admin.
func TestExplainPage(t *testing.T) {
	c := newConsole(t, webui.Options{})
	s := c.admin(t)
	c.member(t, "vera", "viewer")
	wa := c.member(t, "wanda", "admin")
	oa := c.orgAdmin(t, "olga")
	for _, who := range []string{s, oa} {
		body := c.page(t, who, "/ui/admin/explain?user=vera")
		got := actionsOf(t, body)
		if !got["auth.explain.confirm"] || !got["nav.admin.explain"] || !got["field.action"] || got["dialog.cancel"] {
			t.Errorf("explain page's actions = %v, want its form in the page", got)
		}
		f := formOf(t, body, "auth.explain", "/auth/explain")
		if f.fields["user"] != "vera" {
			t.Errorf("the form's user = %q, want vera from the query", f.fields["user"])
		}
		for action, allowed := range map[string]bool{"config.read": true, "config.deploy": false} {
			var e wire.Explanation
			out := c.ok(t, who, f, map[string]string{"action": action, "object": "config/web"})
			if err := json.Unmarshal([]byte(out), &e); err != nil {
				t.Fatal(err)
			}
			if e.Allowed != allowed || !e.Visible || !strings.Contains(e.Reason, action) {
				t.Errorf("explain vera %s config/web = %+v, want allowed %t, visible, a reason naming the action", action, e, allowed)
			}
		}
	}
	if res, _ := c.get(t, wa, "/ui/admin/explain"); res.StatusCode != http.StatusForbidden {
		t.Errorf("a workspace admin: GET /ui/admin/explain = %d, want 403", res.StatusCode)
	}
	if actionsOf(t, c.page(t, wa, "/ui/admin/workspaces"))["nav.admin.explain"] {
		t.Errorf("a workspace admin has the Explain tab")
	}
}

// TestExplainFromTheBrowser: in a real Chromium, the explain page's form
// shows its CLI line as the fields are filled, and the API's answer
// below it (refused, visible, the reason), ready to ask again.
func TestExplainFromTheBrowser(t *testing.T) {
	c := newConsole(t, webui.Options{})
	s := c.admin(t)
	c.member(t, "vera", "viewer")
	ctx := browse(t, c, s)
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	ask := func(action string) (cli, allowed, reason string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(c.srv.URL+"/ui/admin/explain?user=vera&object=config/web"),
			chromedp.SetValue(chromedp.CSS(`[data-field="action"]`), action),
			chromedp.SendKeys(chromedp.CSS(`[data-field="object"]`), " "), // an input event: the CLI line follows
		)
		if err != nil {
			t.Fatalf("fill the form: %v", err)
		}
		cli = text(`[data-cli-line]`)
		err = chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`[data-action="auth.explain.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-answer-key="allowed"]`)),
		)
		if err != nil {
			t.Fatalf("explain %s: %v", action, err)
		}
		return cli, text(`[data-answer-key="allowed"]`), text(`[data-answer-key="reason"]`)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(c.srv.URL+"/ui/admin/explain?user=vera&object=config/web")); err != nil {
		t.Fatal(err)
	}
	if cli := text(`[data-cli-line]`); !strings.HasPrefix(cli, "stagehand auth explain --user vera --action ") || !strings.HasSuffix(cli, " --object config/web") {
		t.Errorf("the filled form's CLI line reads %q", cli)
	}
	cli, allowed, reason := ask("config.deploy")
	if cli != "stagehand auth explain --user vera --action config.deploy --object config/web" {
		t.Errorf("the CLI line reads %q", cli)
	}
	if allowed != "no" || !strings.Contains(reason, "config.deploy") {
		t.Errorf("explain vera config.deploy config/web shows allowed %q, reason %q; want no and a reason", allowed, reason)
	}
	if _, allowed, _ := ask("config.read"); allowed != "yes" {
		t.Errorf("explain vera config.read config/web shows allowed %q, want yes", allowed)
	}
}
