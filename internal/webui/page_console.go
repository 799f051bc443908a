package webui

import (
	"net/http"
	"net/url"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
)

type consoleData struct {
	Config, VM string
	State      string // the VM's
	// SerialWS and VNCWS are the API's websocket paths (the browser
	// makes them absolute).
	SerialWS, VNCWS string
	ConfigURL       string
	Missing         string // the vendored JavaScript is not built
}

// consolePage is one VM's consoles: serial in xterm.js and graphical in
// noVNC, both over the API's websockets, with a toolbar. A user who may
// not open the console gets the API's answer (404 invisible, 403
// forbidden).
func (h *Handler) consolePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name, vm := r.PathValue("name"), r.PathValue("vm")
	if err := h.lab.check(ctx, auth.ConfigConsole, access.Ref{Kind: access.KindConfig, Name: name}); err != nil {
		h.fail(w, r, err)
		return
	}
	c, err := h.lab.Configs.Get(ctx, name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := consoleData{Config: name, VM: vm, Missing: h.assets.Missing(), ConfigURL: "/ui/configs/" + url.PathEscape(name)}
	found := false
	for _, v := range c.VMs {
		if v.Name == vm {
			found, d.State = true, v.State
		}
	}
	if !found {
		h.fail(w, r, errdefs.NotFound("configuration %q has no VM %q", name, vm))
		return
	}
	base := "/api/v1/configs/" + url.PathEscape(name) + "/vms/" + url.PathEscape(vm)
	d.SerialWS, d.VNCWS = base+"/serial/ws", base+"/vnc/ws"
	f, err := h.frameFor(r, vm+" of "+name, "configs")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	f.Page = d
	h.render(w, r, "console.html", f)
}
