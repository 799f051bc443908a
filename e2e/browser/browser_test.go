package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Passwords of the test's users (the daemon asks for 12 characters at
// least).
const (
	authorPassword = "correct horse battery"
	viewerPassword = "viewer staple horse"
)

// configJSON is what the tests read of `config show -o json`.
type configJSON struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Fenced      bool   `json:"fenced"`
	FencePolicy string `json:"fence_policy"`
	VMs         []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Disks []struct {
			Path  string   `json:"path"`
			Chain []string `json:"chain"`
		} `json:"disks"`
		NICs []struct {
			IP         string `json:"ip"`
			ExternalIP string `json:"external_ip"`
		} `json:"nics"`
	} `json:"vms"`
}

func (d *daemon) config(name string) configJSON {
	d.tb.Helper()
	var c configJSON
	d.json(&c, "config", "show", name)
	return c
}

// labFixture imports the test guest as template "guest" (direct kernel
// boot with a root shell on its serial console) and makes network lan.
func labFixture(tb testing.TB, d *daemon) {
	tb.Helper()
	guest := guestImages(tb)
	cmdline, err := os.ReadFile(filepath.Join(guest, "cmdline"))
	if err != nil {
		tb.Fatal(err)
	}
	d.ok("template", "import", "guest", "--disk", filepath.Join(guest, "data.qcow2"), "--memory", "256",
		"--kernel", filepath.Join(guest, "vmlinuz"), "--initrd", filepath.Join(guest, "initrd.img"),
		"--cmdline", strings.TrimSpace(string(cmdline))+" stagehand.shell")
	d.ok("network", "create", "lan", "--subnet", "10.93.0.0/24", "--pool", "10.93.0.10-10.93.0.40")
}

// TestWebConsole walks the console in a browser as its users do, on one
// daemon and one guest shared by the steps (each needs the one before).
func TestWebConsole(t *testing.T) {
	requireLab(t)
	ns := newNamespace(t)
	d := startDaemon(t, ns)
	labFixture(t, d)
	d.addUser("alice", authorPassword, "author")
	d.addUser("vera", viewerPassword, "viewer")
	b := startBrowser(t, ns, d.url)
	alice := b.session(t)

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow() // the later steps build on this one
		}
	}

	step("SignIn", func(t *testing.T) {
		run(t, alice, "open the sign-in page", 30*time.Second,
			chromedp.Navigate(b.url+"/ui/configs"),
			// A page without a session leads to the sign-in form.
			chromedp.WaitVisible(chromedp.CSS(`form#signin`)),
		)
		screenshot(t, alice, "login")
		run(t, alice, "a wrong password", 30*time.Second,
			chromedp.SendKeys(chromedp.CSS(`[data-field="user"]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`[data-field="password"]`), "not the password"),
			chromedp.Click(chromedp.CSS(`[data-action="session.login"]`)),
		)
		msg := value(t, alice, "the sign-in error", 30*time.Second,
			chromedp.Poll[string](`document.querySelector("#signin [data-error]").textContent`))
		if !strings.Contains(msg, "wrong user name or password") {
			t.Errorf("wrong password: the form says %q", msg)
		}
		b.signIn(t, alice, "alice", authorPassword)
		user := value(t, alice, "read the signed-in user", 10*time.Second, chromedp.Text(chromedp.CSS(`.session .user`)))
		if user != "alice" {
			t.Errorf("header names %q, want alice", user)
		}
	})

	step("CreateCloneDeployFenced", func(t *testing.T) {
		run(t, alice, "create web", 60*time.Second,
			chromedp.Navigate(b.url+"/ui/configs"),
			chromedp.Click(chromedp.CSS(`[data-action="config.create"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-config-create`)),
			chromedp.SendKeys(chromedp.CSS(`#dlg-config-create [data-field="name"]`), "web"),
			chromedp.SetValue(chromedp.CSS(`#dlg-config-create [data-field="vms[0].template"]`), "guest"),
			chromedp.SetValue(chromedp.CSS(`#dlg-config-create [data-field="vms[0].network"]`), "lan"),
			chromedp.Click(chromedp.CSS(`[data-action="config.create.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-live-config="web"] h1 [data-state="undeployed"]`)),
		)
		run(t, alice, "clone web, linked", 60*time.Second,
			chromedp.Click(chromedp.CSS(`[data-action="config.clone"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-config-clone`)),
			chromedp.SetValue(chromedp.CSS(`#dlg-config-clone [data-field="name"]`), "web-2"),
			chromedp.SetValue(chromedp.CSS(`#dlg-config-clone [data-field="mode"]`), "linked"),
			chromedp.Click(chromedp.CSS(`[data-action="config.clone.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-live-config="web-2"] h1 [data-state="undeployed"]`)),
		)
		run(t, alice, "deploy web-2 fenced", 3*time.Minute,
			chromedp.Click(chromedp.CSS(`[data-action="config.deploy"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-config-deploy`)),
			chromedp.Click(chromedp.CSS(`#dlg-config-deploy [data-field="fenced"]`)),
		)
		cli := value(t, alice, "read the CLI line", 10*time.Second, chromedp.Text(chromedp.CSS(`#dlg-config-deploy [data-cli-line]`)))
		if want := "stagehand config deploy web-2 --fenced --fence-policy in-out"; cli != want {
			t.Errorf("the deploy dialog's CLI line is %q, want %q", cli, want)
		}
		screenshot(t, alice, "config-deploy-dialog")
		run(t, alice, "confirm the deploy", 3*time.Minute,
			chromedp.Click(chromedp.CSS(`[data-action="config.deploy.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-live-config="web-2"] h1 [data-state="deployed"]`)),
		)

		// The lab agrees: a linked clone (its own top over layers of web's
		// chain), deployed behind a fence with new external IPs.
		web, clone := d.config("web"), d.config("web-2")
		if web.State != "undeployed" || clone.State != "deployed" || !clone.Fenced || clone.FencePolicy != "in-out" {
			t.Fatalf("config show: web %s; web-2 %s fenced=%v policy %q; want undeployed, and deployed fenced in-out",
				web.State, clone.State, clone.Fenced, clone.FencePolicy)
		}
		wc, cc := web.VMs[0].Disks[0].Chain, clone.VMs[0].Disks[0].Chain
		linked := len(cc) >= 2 && cc[0] != wc[0]
		for _, layer := range cc[1:] {
			linked = linked && slices.Contains(wc, layer)
		}
		if !linked {
			t.Errorf("web-2's chain %v and web's %v: want a linked clone (own top over layers of web's chain)", cc, wc)
		}
		nic := clone.VMs[0].NICs[0]
		if nic.ExternalIP == "" || nic.ExternalIP == nic.IP || nic.IP != web.VMs[0].NICs[0].IP {
			t.Errorf("web-2's NIC: internal %s external %q; want web's internal %s and a new external IP", nic.IP, nic.ExternalIP, web.VMs[0].NICs[0].IP)
		}
		// The page's fence map shows the same pair.
		fence := value(t, alice, "read the fence map", 30*time.Second, chromedp.Text(chromedp.CSS(`table.fence tbody tr[data-name="vm1/0"]`)))
		if !strings.Contains(fence, nic.IP) || !strings.Contains(fence, nic.ExternalIP) || !strings.Contains(fence, "in-out") {
			t.Errorf("fence map row %q lacks %s ↔ %s in-out", fence, nic.IP, nic.ExternalIP)
		}
		screenshot(t, alice, "config")
		run(t, alice, "open the list", 30*time.Second,
			chromedp.Navigate(b.url+"/ui/configs"),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-name="web-2"][data-state="deployed"]`)),
		)
		screenshot(t, alice, "configs")
	})

	consolePath := b.url + "/ui/configs/web-2/vms/vm1/console"
	bob := b.session(t) // alice again, in a second browser

	step("SerialConsole", func(t *testing.T) {
		navigate(t, alice, "open the console", consolePath, `.xterm-rows`, 30*time.Second)
		waitStatus(t, alice, "you hold the keyboard")
		b.signIn(t, bob, "alice", authorPassword)
		navigate(t, bob, "open the console in a second browser", consolePath, `.xterm-rows`, 30*time.Second)
		waitStatus(t, bob, "watching")
		// The guest's shell starts with its services: wait for its boot
		// line, then type until the shell answers (keys typed before the
		// shell reads its terminal are lost).
		waitRows(t, alice, "the guest's boot line", 3*time.Minute, func(rows []string) bool {
			return containsLine(rows, "STAGEHAND-IP eth0", false)
		})
		deadline := time.Now().Add(60 * time.Second)
		for {
			// xterm.js reads keys from its (invisible) helper textarea.
			run(t, alice, "type echo hi", 10*time.Second,
				chromedp.Evaluate[chromedp.Void](`document.querySelector(".xterm-helper-textarea").focus()`),
				typeKeys("echo hi\r"))
			if rows := readRowsFor(t, alice, 5*time.Second, func(rows []string) bool { return containsLine(rows, "hi", true) }); containsLine(rows, "hi", true) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the guest never echoed hi; the terminal shows:\n%s", strings.Join(readRows(t, alice), "\n"))
			}
		}
		// The second browser, watching, saw the same output.
		waitRows(t, bob, "the echo in the watching browser", 10*time.Second, func(rows []string) bool {
			return containsLine(rows, "echo hi", false) && containsLine(rows, "hi", true)
		})
		screenshot(t, alice, "console-serial")
		// A reload replays the console's last output.
		run(t, bob, "reload", 30*time.Second, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`.xterm-rows`)))
		waitRows(t, bob, "the replayed echo after a reload", 10*time.Second, func(rows []string) bool {
			return containsLine(rows, "hi", true)
		})
	})

	step("GraphicalConsole", func(t *testing.T) {
		run(t, alice, "open the graphical console", 30*time.Second,
			chromedp.Click(chromedp.CSS(`[data-action="console.graphical"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-vnc] canvas`)),
		)
		waitStatus(t, alice, "graphical: watching")
		// noVNC's canvas holds the framebuffer at its own size; the
		// screendump of the same screen must match it.
		type comparison struct {
			CanvasW, CanvasH, ScreenW, ScreenH int
			Lit, Same, Total                   int
		}
		var cmp comparison
		deadline := time.Now().Add(30 * time.Second)
		for {
			cmp = value(t, alice, "compare the canvas with screen.png", 30*time.Second,
				chromedp.Evaluate[comparison](compareScreenJS("/api/v1/configs/web-2/vms/vm1/screen.png"), chromedp.EvalAwaitPromise))
			if cmp.Total > 0 && cmp.Lit > cmp.Total/1000 && cmp.Same > cmp.Total*95/100 {
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Second) // screen.png is at most 2 s old
		}
		t.Logf("canvas %dx%d, screen.png %dx%d, %d of %d pixels lit, %d equal", cmp.CanvasW, cmp.CanvasH, cmp.ScreenW, cmp.ScreenH, cmp.Lit, cmp.Total, cmp.Same)
		if cmp.CanvasW == 0 || cmp.CanvasW != cmp.ScreenW || cmp.CanvasH != cmp.ScreenH {
			t.Errorf("noVNC canvas %dx%d, screen.png %dx%d: want the same size", cmp.CanvasW, cmp.CanvasH, cmp.ScreenW, cmp.ScreenH)
		}
		if cmp.Lit <= cmp.Total/1000 {
			t.Errorf("the canvas is blank: %d of %d pixels lit", cmp.Lit, cmp.Total)
		}
		if cmp.Same <= cmp.Total*95/100 {
			t.Errorf("the canvas and screen.png differ: %d of %d pixels equal", cmp.Same, cmp.Total)
		}
		screenshot(t, alice, "console-graphical")
	})

	step("ConsoleLink", func(t *testing.T) {
		// Alice makes a link to web-2/vm1's consoles on its console page.
		run(t, alice, "create a console link", 30*time.Second,
			chromedp.Navigate(consolePath),
			chromedp.WaitVisible(chromedp.CSS(`.xterm-rows`)),
			chromedp.Click(chromedp.CSS(`[data-action="console.link"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-console-link`)),
			chromedp.SendKeys(chromedp.CSS(`#dlg-console-link [data-field="expires_in"]`), "2h"),
			chromedp.Click(chromedp.CSS(`[data-action="console.link.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-console-link [data-result]`)),
		)
		link := value(t, alice, "read the link", 10*time.Second, chromedp.Value(chromedp.CSS(`#dlg-console-link [data-result]`)))
		if !strings.HasPrefix(link, b.url+"/console/web-2/vm1?console_link=") {
			t.Fatalf("the dialog shows %q, want %s/console/web-2/vm1?console_link=…", link, b.url)
		}
		// A fresh browser context: no session, only the link.
		guest := b.session(t)
		run(t, guest, "open the link", 30*time.Second,
			chromedp.Navigate(link),
			chromedp.WaitVisible(chromedp.CSS(`.xterm-rows`)),
		)
		waitRows(t, guest, "the serial output through the link", 30*time.Second, func(rows []string) bool {
			return containsLine(rows, "echo hi", false) && containsLine(rows, "hi", true)
		})
		if n := value(t, guest, "look for the console's other pages", 10*time.Second, chromedp.Evaluate[int](
			`document.querySelectorAll('header nav a, header .session, [data-action="console.link"], [data-console-links]').length`)); n != 0 {
			t.Errorf("the link's page shows %d of the console's navigation, session or links", n)
		}
		// Alice revokes it from the console page; the link then opens nothing.
		run(t, alice, "revoke the link", 30*time.Second,
			chromedp.Navigate(consolePath),
			chromedp.WaitVisible(chromedp.CSS(`[data-console-links] tr[data-state="active"] [data-action="console.link.revoke"]`)),
			chromedp.Click(chromedp.CSS(`[data-console-links] tr[data-state="active"] [data-action="console.link.revoke"]`)),
			chromedp.Click(chromedp.CSS(`dialog[open] [data-action="console.link.revoke.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-console-links] tr[data-state="revoked"]`)),
		)
		status := value(t, guest, "open the revoked link", 30*time.Second, chromedp.Evaluate[int](
			fmt.Sprintf(`fetch(%q).then(r => r.status)`, link), chromedp.EvalAwaitPromise))
		if status != 404 {
			t.Errorf("the revoked link's page: %d, want 404", status)
		}
	})

	step("PhoneWidthAndKeyboard", func(t *testing.T) {
		// Alice (in her second browser) at a phone's width: nothing
		// wider than the screen, and every action reachable by Tab, with
		// a visible focus.
		run(t, bob, "phone width", 10*time.Second,
			chromedp.EmulateViewport(phoneW, phoneH, chromedp.EmulateMobile, chromedp.EmulateScale(1)))
		defer run(t, bob, "desktop width", 10*time.Second, chromedp.EmulateViewport(desktopW, desktopH))
		for _, p := range []struct{ path, ready string }{
			{"/ui/configs", `tr[data-name="web-2"]`},
			{"/ui/configs/web-2", `table.fence`},
		} {
			run(t, bob, "open "+p.path, 30*time.Second,
				chromedp.Navigate(b.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
			type widths struct{ Scroll, Inner int }
			w := value(t, bob, "measure "+p.path, 10*time.Second, chromedp.Evaluate[widths](
				`({Scroll: document.scrollingElement.scrollWidth, Inner: window.innerWidth})`))
			if w.Inner != phoneW || w.Scroll > w.Inner {
				t.Errorf("%s at %dpx: scrollWidth %d, innerWidth %d; want no horizontal overflow", p.path, phoneW, w.Scroll, w.Inner)
				t.Logf("wider than the screen: %v", value(t, bob, "find what overflows", 10*time.Second, chromedp.Evaluate[[]string](overflowingJS)))
			}
			tabThrough(t, bob, p.path)
		}
	})

	step("ViewerSeesNoForbiddenAction", func(t *testing.T) {
		vera := b.session(t)
		b.signIn(t, vera, "vera", viewerPassword)
		run(t, vera, "open the list", 10*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-name="web"]`)))
		n := value(t, vera, "count the list's actions", 10*time.Second,
			chromedp.Evaluate[int](`document.querySelectorAll('[data-action="config.create"]').length`))
		if n != 0 {
			t.Errorf("a viewer is offered config.create (%d elements)", n)
		}
		for _, name := range []string{"web", "web-2"} {
			run(t, vera, "open "+name, 30*time.Second,
				chromedp.Navigate(b.url+"/ui/configs/"+name),
				chromedp.WaitVisible(chromedp.CSS(`[data-live-config="`+name+`"] h1`)))
			offered := value(t, vera, "read "+name+"'s actions", 10*time.Second,
				chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.actions [data-action], [data-action="vm.console"]')).map(e => e.dataset.action)`))
			if len(offered) != 0 {
				t.Errorf("a viewer is offered %v on %s", offered, name)
			}
		}
		// A request forged from the page, with the viewer's session.
		for _, req := range [][2]string{{"POST", "/api/v1/configs/web/deploy"}, {"DELETE", "/api/v1/configs/web"}, {"POST", "/api/v1/configs/web-2/undeploy"}} {
			body := "{}"
			if req[0] == "DELETE" {
				body = ""
			}
			status := value(t, vera, "forge "+req[0]+" "+req[1], 30*time.Second, chromedp.Evaluate[int](fmt.Sprintf(
				`fetch(%q, {method: %q, credentials: "same-origin", headers: {"Content-Type": "application/json"}, body: %q || undefined}).then(r => r.status)`,
				req[1], req[0], body), chromedp.EvalAwaitPromise))
			if status != 403 {
				t.Errorf("a viewer's %s %s: %d, want 403", req[0], req[1], status)
			}
		}
		if web, clone := d.config("web"), d.config("web-2"); web.State != "undeployed" || clone.State != "deployed" {
			t.Errorf("after the forged requests: web %s, web-2 %s; want undeployed, deployed", web.State, clone.State)
		}
		// The phone-width pages, as a viewer sees them.
		if screenshotsWanted {
			run(t, vera, "phone width", 30*time.Second,
				chromedp.EmulateViewport(phoneW, phoneH, chromedp.EmulateMobile, chromedp.EmulateScale(1)),
				chromedp.Navigate(b.url+"/ui/configs"), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="web-2"]`)))
			screenshot(t, vera, "configs-phone")
			run(t, vera, "phone width", 30*time.Second,
				chromedp.Navigate(b.url+"/ui/configs/web-2"), chromedp.WaitVisible(chromedp.CSS(`table.fence`)))
			screenshot(t, vera, "config-phone")
		}
	})

	step("AdminGroups", func(t *testing.T) {
		// An organization's admin makes group ops on its page and adds
		// vera to it; the CLI lists what the page shows.
		const olgaPassword = "olga battery staple"
		if out, errOut, code := d.run(olgaPassword+"\n", "user", "create", "olga", "--password-stdin"); code != 0 {
			t.Fatalf("user create olga: exit %d\n%s%s", code, out, errOut)
		}
		d.ok("org", "add-admin", "default", "olga")
		olga := b.session(t)
		b.signIn(t, olga, "olga", olgaPassword)
		run(t, olga, "create group ops", 30*time.Second,
			chromedp.Navigate(b.url+"/ui/admin/orgs/default/groups"),
			chromedp.Click(chromedp.CSS(`[data-action="group.create"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-group-create`)),
			chromedp.SendKeys(chromedp.CSS(`#dlg-group-create [data-field="name"]`), "ops"),
			chromedp.Click(chromedp.CSS(`[data-action="group.create.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-name="ops"]`)),
		)
		run(t, olga, "add vera to ops", 30*time.Second,
			chromedp.Click(chromedp.CSS(`tr[data-name="ops"] [data-action="group.add-member"]`)),
			chromedp.WaitVisible(chromedp.CSS(`dialog[open] [data-field="user"]`)),
			chromedp.SendKeys(chromedp.CSS(`dialog[open] [data-field="user"]`), "vera"),
			chromedp.Click(chromedp.CSS(`dialog[open] [data-action="group.add-member.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-name="ops"] li[data-name="vera"]`)),
		)
		var groups []struct {
			Org     string   `json:"org"`
			Name    string   `json:"name"`
			Members []string `json:"members"`
		}
		d.json(&groups, "group", "list")
		if len(groups) != 1 || groups[0].Org+"/"+groups[0].Name != "default/ops" || strings.Join(groups[0].Members, ",") != "vera" {
			t.Errorf("group list after the page's create and add-member: %+v, want default/ops with vera", groups)
		}
		screenshot(t, olga, "admin-groups")
	})

	step("Undeploy", func(t *testing.T) {
		run(t, alice, "undeploy web-2, discarding its state", 2*time.Minute,
			chromedp.Navigate(b.url+"/ui/configs/web-2"),
			chromedp.Click(chromedp.CSS(`[data-action="config.undeploy"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlg-config-undeploy`)),
			chromedp.Click(chromedp.CSS(`#dlg-config-undeploy [data-field="save_state"]`)), // checked by default
			chromedp.Click(chromedp.CSS(`[data-action="config.undeploy.confirm"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-live-config="web-2"] h1 [data-state="undeployed"]`)),
		)
		c := d.config("web-2")
		if c.State != "undeployed" || c.VMs[0].State == "saved" || c.VMs[0].NICs[0].ExternalIP != "" {
			t.Errorf("after undeploy: state %s, VM %s, external IP %q; want undeployed, not saved, none", c.State, c.VMs[0].State, c.VMs[0].NICs[0].ExternalIP)
		}
	})

	// The console's other pages, only for the screenshots (a normal run
	// spends no time on them): a system administrator sees every one,
	// each with something in it.
	if screenshotsWanted {
		step("OtherPagesScreenshots", func(t *testing.T) {
			otherPagesScreenshots(t, b, d)
		})
	}
}

// otherPagesScreenshots fills the lab's other pages cheaply through the
// CLI (a library entry, an archive, an organization, a token) and writes
// each page's screenshot at the desktop size, as user ada, a system
// administrator.
func otherPagesScreenshots(t *testing.T, b *browser, d *daemon) {
	const adminPassword = "admin battery staple"
	if out, errOut, code := d.run(adminPassword+"\n", "user", "create", "ada", "--system-admin", "--display-name", "Ada Admin", "--password-stdin"); code != 0 {
		t.Fatalf("user create ada: exit %d\n%s%s", code, out, errOut)
	}
	d.ok("library", "capture", "web", "web-golden")
	d.ok("archive", "create", "web-2", "web-2-fenced")
	d.ok("org", "create", "research")
	d.ok("workspace", "create", "research/sandbox")
	d.ok("token", "create", "ci", "--user", "ada", "--expires-in", "30d")
	for _, p := range []struct{ name, path, ready string }{
		{"templates", "/ui/templates", `tr[data-name="guest"]`},
		{"networks", "/ui/networks", `tr[data-name="lan"]`},
		{"network", "/ui/networks/lan", `.pool-grid`},
		{"library", "/ui/library", `tr[data-name="web-golden"]`},
		{"archives", "/ui/archives", `tr[data-name="web-2-fenced"]`},
		{"cleanup", "/ui/cleanup", `table.list`},
		{"jobs", "/ui/jobs", `#jobs-list table`},
		{"activity", "/ui/activity", `table.log tbody tr`},
		{"tokens", "/ui/tokens", `table.list`},
		{"admin-users", "/ui/admin/users", `table.list`},
		{"admin-orgs", "/ui/admin/orgs", `table.list`},
		{"admin-workspaces", "/ui/admin/workspaces", `table.list`},
		{"admin-user", "/ui/admin/users/alice", `table.quota`},
		{"admin-explain", "/ui/admin/explain?user=vera", `form[data-ask]`},
	} {
		// A browser context per page: in one tab, every page left keeps
		// its event stream's connection open, and the seventh page waits
		// forever for one of chromium's six connections to the host.
		ada := b.session(t)
		b.signIn(t, ada, "ada", adminPassword)
		run(t, ada, "open "+p.path, 30*time.Second,
			chromedp.Navigate(b.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		if n := value(t, ada, "look for an error on "+p.path, 10*time.Second,
			chromedp.Evaluate[int](`document.querySelectorAll(".error-page").length`)); n != 0 {
			t.Errorf("%s shows an error page", p.path)
			continue
		}
		screenshot(t, ada, p.name)
	}
}

// focusablesJS marks the page's focusable elements that are shown (not
// in a closed dialog, not disabled) and returns how each is named.
const focusablesJS = `(() => {
  const sel = "a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex='-1'])";
  return Array.from(document.querySelectorAll(sel)).filter((el) => {
    if (el.disabled || el.closest("dialog:not([open])") || el.closest("[hidden]")) return false;
    return el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  }).map((el, i) => {
    el.dataset.tabCheck = String(i);
    return el.dataset.action || el.dataset.field || el.tagName.toLowerCase() + " " + (el.textContent || "").trim().slice(0, 30);
  });
})()`

// focusedJS names the focused element's mark, and whether its focus is
// drawn (an outline or a box shadow).
const focusedJS = `(() => {
  const el = document.activeElement;
  if (!el || el === document.body) return {Mark: "", Drawn: false};
  const st = getComputedStyle(el);
  const outline = st.outlineStyle !== "none" && parseFloat(st.outlineWidth) > 0;
  return {Mark: el.dataset.tabCheck || "", Drawn: outline || st.boxShadow !== "none"};
})()`

// overflowingJS names the innermost elements whose right edge is past
// the phone's width.
var overflowingJS = fmt.Sprintf(`Array.from(document.querySelectorAll("body *")).filter((el) => el.getBoundingClientRect().right > %d + 0.5 &&
    !Array.from(el.children).some((c) => c.getBoundingClientRect().right > %d + 0.5))
  .slice(0, 10).map((el) => el.tagName.toLowerCase() + (el.className ? "." + String(el.className).replace(/ /g, ".") : "") +
    (el.dataset.action ? "[" + el.dataset.action + "]" : "") + " " + Math.round(el.getBoundingClientRect().right))`, phoneW, phoneW)

// tabThrough presses Tab from the top of the page until the focus has
// been on every focusable element shown, each drawn with a visible focus
// style; it fails naming the elements Tab never reached.
func tabThrough(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	names := value(t, ctx, "list the focusable elements of "+page, 10*time.Second, chromedp.Evaluate[[]string](focusablesJS))
	if len(names) == 0 {
		t.Fatalf("%s: nothing to focus", page)
	}
	run(t, ctx, "blur", 10*time.Second, chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)`))
	reached := map[string]bool{}
	type focused struct {
		Mark  string
		Drawn bool
	}
	for i := 0; i < len(names)+5 && len(reached) < len(names); i++ {
		run(t, ctx, "press Tab", 10*time.Second, chromedp.KeyEvent(kb.Tab))
		f := value(t, ctx, "read the focus", 10*time.Second, chromedp.Evaluate[focused](focusedJS))
		if f.Mark == "" {
			continue
		}
		reached[f.Mark] = true
		if !f.Drawn {
			var n int
			fmt.Sscan(f.Mark, &n)
			t.Errorf("%s: %s has no visible focus style", page, names[n])
		}
	}
	var missed []string
	for i, n := range names {
		if !reached[fmt.Sprint(i)] {
			missed = append(missed, n)
		}
	}
	if len(missed) > 0 {
		t.Errorf("%s: Tab never reached %d of %d elements: %v", page, len(missed), len(names), missed)
	}
	t.Logf("%s: Tab reached %d of %d focusable elements", page, len(names)-len(missed), len(names))
}

// typeKeys types s into the focused element as a keyboard does: per key
// a keyDown carrying the key's text, then a keyUp. (chromedp's KeyEvent
// adds a separate char event, which Chrome delivers even when the page
// handled the keyDown, as xterm.js does: every key would arrive twice.)
func typeKeys(s string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range s {
			evs := kb.Encode(r)
			down, up := *evs[0], *evs[len(evs)-1]
			if len(evs) == 3 { // printable: the char event's text goes with the keyDown
				down.Text, down.UnmodifiedText = evs[1].Text, evs[1].UnmodifiedText
			}
			for _, ev := range []input.DispatchKeyEventParams{down, up} {
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, ev); err != nil {
					return fmt.Errorf("key %q: %w", r, err)
				}
			}
		}
		return nil
	})
}

// waitStatus waits until the console's status line contains want.
func waitStatus(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	value(t, ctx, "console status "+want, 30*time.Second, chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`(s => s.includes(%q) && s)(document.querySelector("[data-console-status]").textContent)`, want)))
}

// rowsJS reads xterm.js's rows (its DOM renderer) as text.
const rowsJS = `Array.from(document.querySelectorAll(".xterm-rows > div")).map(d => d.textContent.replace(/\u00a0/g, " ").trimEnd())`

func readRows(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return value(t, ctx, "read the terminal", 10*time.Second, chromedp.Evaluate[[]string](rowsJS))
}

// readRowsFor reads the terminal until ok or timeout, returning the last
// rows read.
func readRowsFor(t *testing.T, ctx context.Context, timeout time.Duration, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows := readRows(t, ctx)
		if ok(rows) || time.Now().After(deadline) {
			return rows
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRows fails the test unless the terminal comes to satisfy ok.
func waitRows(t *testing.T, ctx context.Context, what string, timeout time.Duration, ok func([]string) bool) {
	t.Helper()
	if rows := readRowsFor(t, ctx, timeout, ok); !ok(rows) {
		t.Fatalf("%s: not seen within %s; the terminal shows:\n%s", what, timeout, strings.Join(rows, "\n"))
	}
}

// containsLine reports whether a row is s (exact) or contains it.
func containsLine(rows []string, s string, exact bool) bool {
	for _, r := range rows {
		if exact && strings.TrimSpace(r) == s || !exact && strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// compareScreenJS compares noVNC's canvas with the screendump at png: their
// sizes, how many canvas pixels are lit (not black) and how many equal the
// screendump's.
func compareScreenJS(png string) string {
	return `(async () => {
  const canvas = document.querySelector("[data-vnc] canvas");
  const res = await fetch(` + fmt.Sprintf("%q", png) + ` + "?t=" + Date.now(), {credentials: "same-origin"});
  const bmp = await createImageBitmap(await res.blob());
  const out = {CanvasW: canvas.width, CanvasH: canvas.height, ScreenW: bmp.width, ScreenH: bmp.height, Lit: 0, Same: 0, Total: 0};
  if (canvas.width !== bmp.width || canvas.height !== bmp.height) return out;
  const a = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const off = new OffscreenCanvas(bmp.width, bmp.height);
  const octx = off.getContext("2d");
  octx.drawImage(bmp, 0, 0);
  const b = octx.getImageData(0, 0, bmp.width, bmp.height).data;
  out.Total = a.length / 4;
  for (let i = 0; i < a.length; i += 4) {
    if (a[i] + a[i + 1] + a[i + 2] > 48) out.Lit++;
    if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) <= 24) out.Same++;
  }
  return out;
})()`
}
