package webui

import (
	"net/http"
	"sort"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// configRow is one configuration of the list.
type configRow struct {
	Name, Description, State, Owner, Workspace string
	Fenced                                     bool
	FencePolicy                                string
	VMs, Running                               int
	StorageExpires, DeployExpires              time.Time
	LastError                                  string
}

func rowOf(c *lab.ConfigView) configRow {
	row := configRow{Name: c.Name, Description: c.Description, State: c.State, Owner: c.Owner, Workspace: c.Workspace,
		Fenced: c.Fenced, FencePolicy: c.FencePolicy, VMs: len(c.VMs), LastError: c.LastError,
		StorageExpires: c.Lease.StorageExpires, DeployExpires: c.Lease.DeployExpires}
	for _, v := range c.VMs {
		if v.State == "running" {
			row.Running++
		}
	}
	return row
}

type configsData struct {
	Rows      []configRow
	States    []string // the states present, for the filter
	Actions   []Action
	Workspace string
	// After is the newest event's id: the page's event stream starts
	// after it.
	After int64
}

// configsPage lists the configurations the user may see (in the chosen
// workspace), kept current from the event stream.
func (h *Handler) configsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, err := h.frameFor(r, "Configurations", "configs")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	after, err := h.lab.latestEvent(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	cs, err := h.lab.Configs.List(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := configsData{Workspace: f.Workspace, After: after}
	states := map[string]bool{}
	for i := range cs {
		if f.Workspace != "" && cs[i].Workspace != f.Workspace {
			continue
		}
		d.Rows = append(d.Rows, rowOf(&cs[i]))
		states[cs[i].State] = true
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Name < d.Rows[j].Name })
	for s := range states {
		d.States = append(d.States, s)
	}
	sort.Strings(d.States)
	if d.Actions, err = h.createActions(r, f.Workspace); err != nil {
		h.fail(w, r, err)
		return
	}
	f.Page = d
	h.render(w, r, "configs.html", f)
}

// configRow answers one row of the list, for a live update; 404 when the
// configuration is gone, invisible, or outside the chosen workspace (the
// list then drops the row).
func (h *Handler) configRow(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	if err := h.lab.check(ctx, auth.ConfigRead, access.Ref{Kind: access.KindConfig, Name: name}); err != nil {
		h.fail(w, r, err)
		return
	}
	c, err := h.lab.Configs.Get(ctx, name)
	if err == nil && c.Kind == store.KindLibrary {
		err = errdefs.NotFound("configuration %q not found (it is a library entry)", name)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ws := r.URL.Query().Get("workspace"); ws != "" && c.Workspace != ws {
		h.fail(w, r, errdefs.NotFound("configuration %q is not in workspace %q", name, ws))
		return
	}
	h.fragment(w, r, "configs.html", "config-row", rowOf(c))
}

// createActions are the list's actions: a new configuration, when the
// user may create one in the chosen workspace (else in their default
// one, where a create without a workspace goes).
func (h *Handler) createActions(r *http.Request, ws string) ([]Action, error) {
	ctx := r.Context()
	tmpls, nets, err := h.choices(r)
	if err != nil {
		return nil, err
	}
	o := h.offers(ctx)
	o.add(auth.ConfigCreate, access.Ref{Kind: access.KindConfig, Workspace: ws}, Action{
		Name: "config.create", Label: "New configuration", Method: http.MethodPost, Path: "/api/v1/configs",
		CLI:     "stagehand config create {name} --vm {vms[0].name}={vms[0].template},net={vms[0].network},ip={vms[0].ip}",
		Confirm: "Create a configuration with one VM (add more with the CLI line's --vm).",
		Fields: []Field{
			{Name: "name", Label: "Name", Required: true},
			{Name: "description", Label: "Description"},
			{Name: "vms[0].name", Label: "VM name", Value: "vm1", Required: true},
			{Name: "vms[0].template", Label: "Template", Kind: FieldSelect, Options: tmpls, Required: true},
			{Name: "vms[0].network", Label: "Network", Kind: FieldSelect, Options: nets, Required: true},
			{Name: "vms[0].ip", Label: "IP (pool, dhcp or an address)", Value: "pool", Required: true},
		},
		Then: "/ui/configs/{name}",
	})
	return o.result()
}

// choices are the names of the templates and networks the user may see,
// for a create's selects.
func (h *Handler) choices(r *http.Request) (tmpls, nets []string, err error) {
	if h.lab.Templates != nil {
		ts, err := h.lab.Templates.List(r.Context())
		if err != nil {
			return nil, nil, err
		}
		for _, t := range ts {
			tmpls = append(tmpls, t.Name)
		}
	}
	if h.lab.Networks != nil {
		ns, err := h.lab.Networks.List(r.Context())
		if err != nil {
			return nil, nil, err
		}
		for _, n := range ns {
			nets = append(nets, n.Name)
		}
	}
	sort.Strings(tmpls)
	sort.Strings(nets)
	return tmpls, nets, nil
}
