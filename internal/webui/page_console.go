package webui

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// consolePages are a VM's console page and a console link's page; links
// checks the links (nil: every link's page is not found).
type consolePages struct {
	*view
	links ConsoleLinks
}

type consoleData struct {
	Config, VM string
	State      string // the VM's; "" on a link's page (no one to read it as)
	// SerialWS and VNCWS are the API's websocket paths (the browser
	// makes them absolute; on a link's page console.js adds the link).
	SerialWS, VNCWS string
	ConfigURL       string
	Missing         string // the vendored JavaScript is not built
	// Link: the page of a console link, for a visitor without a session:
	// the consoles alone.
	Link bool
	// Actions (console.link) and Links: the user's links to this VM.
	Actions []Action
	Links   []linkRow
	// Share: the user may make links, so the links section shows.
	Share bool
}

// linkRow is one console link to the VM.
type linkRow struct {
	ID, User, State  string
	Created, Expires time.Time
	Actions          []Action
}

// consolePage is one VM's consoles: serial in xterm.js and graphical in
// noVNC, both over the API's websockets, with a toolbar; and, for a user
// who may share the configuration, their console links to the VM. A user
// who may not open the console gets the API's answer (404 invisible, 403
// forbidden).
func (p *consolePages) consolePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name, vm := r.PathValue("name"), r.PathValue("vm")
	ref := access.Ref{Kind: access.KindConfig, Name: name}
	if err := p.lab.check(ctx, auth.ConfigConsole, ref); err != nil {
		p.fail(w, r, err)
		return
	}
	c, err := p.lab.Configs.Get(ctx, name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := consoleOf(name, vm, p.assets.Missing())
	found := false
	for _, v := range c.VMs {
		if v.Name == vm {
			found, d.State = true, v.State
		}
	}
	if !found {
		p.fail(w, r, errdefs.NotFound("configuration %q has no VM %q", name, vm))
		return
	}
	if d.Share, err = p.lab.allowed(ctx, auth.ConfigShare, ref); err != nil {
		p.fail(w, r, err)
		return
	}
	if d.Share {
		d.Actions = []Action{{
			Name: "console.link", Label: "Create console link", Method: http.MethodPost,
			Path: "/api/v1/configs/" + url.PathEscape(name) + "/vms/" + url.PathEscape(vm) + "/console-links", Show: "url",
			CLI:     "stagehand vm console-link create " + shellQuote(name) + " " + shellQuote(vm),
			Confirm: "A link that opens this VM's consoles, and nothing else, to whoever has it, with your rights, until it expires or you revoke it. It is shown once.",
			Fields: []Field{
				{Name: "expires_in", Label: "Expires in (e.g. 30m, 8h, 7d; empty: 1 hour; at most 30d)", Flag: "--expires-in"},
			},
		}}
	}
	if d.Links, err = p.consoleLinks(ctx, name, vm); err != nil {
		p.fail(w, r, err)
		return
	}
	p.show(w, r, "console.html", vm+" of "+name, "configs", d)
}

func consoleOf(config, vm, missing string) consoleData {
	base := "/api/v1/configs/" + url.PathEscape(config) + "/vms/" + url.PathEscape(vm)
	return consoleData{Config: config, VM: vm, Missing: missing, ConfigURL: "/ui/configs/" + url.PathEscape(config),
		SerialWS: base + "/serial/ws", VNCWS: base + "/vnc/ws"}
}

// consoleLinks returns the signed-in user's console links to VM vm of
// config (everyone's, for a system administrator, as GET
// /api/v1/console-links answers), newest first, with a revoke on each
// active one.
func (p *consolePages) consoleLinks(ctx context.Context, config, vm string) ([]linkRow, error) {
	id, _ := auth.FromContext(ctx)
	if id.UserID == 0 || p.lab.Store == nil {
		return nil, nil
	}
	var out []linkRow
	now := time.Now()
	err := p.lab.Store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		users := []store.User{{ID: id.UserID, Name: id.Name}}
		if id.SystemAdmin && id.Restrict == nil {
			if users, err = tx.Users().List(); err != nil {
				return err
			}
		}
		for _, u := range users {
			tks, err := tx.Tokens().List(u.ID)
			if err != nil {
				return err
			}
			for _, tk := range tks {
				if tk.Kind != store.TokenConsole || tk.ConsoleConfigID != c.ID || tk.ConsoleVM != vm {
					continue
				}
				row := linkRow{ID: tk.ID, User: u.Name, State: wire.TokenActive, Created: tk.CreatedAt, Expires: tk.ExpiresAt}
				switch {
				case !tk.RevokedAt.IsZero():
					row.State = wire.TokenRevoked
				case !tk.ExpiresAt.IsZero() && !now.Before(tk.ExpiresAt):
					row.State = wire.TokenExpired
				}
				if row.State == wire.TokenActive {
					row.Actions = []Action{{
						Name: "console.link.revoke", Label: "Revoke", Method: http.MethodDelete, Path: "/api/v1/console-links/" + url.PathEscape(tk.ID),
						Danger: true, Key: tk.ID, CLI: "stagehand vm console-link revoke " + shellQuote(tk.ID),
						Confirm: "Revoke console link " + tk.ID + ": whoever has it loses the consoles at once (an open console is cut at its next reconnect).",
					}}
				}
				out = append(out, row)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// ConsoleLinks decides on console links (api.Handler.CheckConsoleLink).
type ConsoleLinks interface {
	// CheckConsoleLink returns nil when token is a console link, good
	// now, to the consoles of VM vm of configuration config.
	CheckConsoleLink(ctx context.Context, token, config, vm string) error
}

// LinkPathPrefix is where console links lead (the API's link URL):
// /console/CONFIG/VM?console_link=TOKEN.
const LinkPathPrefix = "/console/"

// linkPage is the page a console link opens, for anyone who has the link
// and no session: the VM's consoles and nothing else. The link is checked
// before anything is shown; a bad, revoked or expired link, or a path the
// link does not open, is a page that says only that (404).
func (p *consolePages) linkPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	name, vm := r.PathValue("config"), r.PathValue("vm")
	token := r.URL.Query().Get(wire.ConsoleLinkParam)
	if token == "" || p.links == nil {
		p.linkNotFound(w, r)
		return
	}
	if err := p.links.CheckConsoleLink(r.Context(), token, name, vm); err != nil {
		p.log.Info("web console: console link refused", "config", name, "vm", vm, "err", err)
		p.linkNotFound(w, r)
		return
	}
	d := consoleOf(name, vm, p.assets.Missing())
	d.Link = true
	f := frame{Title: vm + " of " + name, AssetsMissing: d.Missing, Asset: p.assets.URL, Page: d}
	p.render(w, r, "console.html", f)
}

// linkNotFound answers a link that opens nothing, naming nothing: not
// the configuration, not why.
func (p *consolePages) linkNotFound(w http.ResponseWriter, r *http.Request) {
	status := http.StatusNotFound
	p.execute(w, r, status, "error.html", "layout.html", frame{Title: http.StatusText(status), Asset: p.assets.URL,
		Page: errorPage{Status: status, StatusText: http.StatusText(status), Message: "This console link does not exist, expired or was revoked."}})
}
