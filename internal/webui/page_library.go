package webui

import (
	"context"
	"net/http"
	"sort"

	"stagehand/internal/auth"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
)

type libraryData struct {
	Rows      []configRow
	Actions   []Action
	Workspace string
	After     int64
}

// libraryPage lists the library entries the user may see, with capture
// (from the configurations they may capture).
func (p *objectPages) libraryPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, after, err := p.listFrame(r, "Library", "library")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := libraryData{Workspace: f.Workspace, After: after}
	es, err := p.lab.Library.List(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	for i := range es {
		if inWorkspace(f.Workspace, es[i].Workspace) {
			d.Rows = append(d.Rows, rowOf(&es[i]))
		}
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Name < d.Rows[j].Name })
	srcs, err := p.undeployedWith(ctx, auth.LibraryCapture, f.Workspace)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if len(srcs) > 0 {
		d.Actions = append(d.Actions, Action{
			Name: "library.capture", Label: "Capture", Method: http.MethodPost, Path: "/api/v1/library",
			CLI:     "stagehand library capture {config} {name}",
			Confirm: "Copy an undeployed configuration into the library, read-only (a linked clone: small and instant).",
			Fields: []Field{
				{Name: "config", Label: "Configuration", Kind: FieldSelect, Options: srcs, Required: true},
				{Name: "name", Label: "Library entry name", Required: true},
				{Name: "storage_lease", Label: "Storage lease (e.g. 30d, never; empty: the default)", Flag: "--storage-lease"},
				{Name: "workspace", Label: "Workspace (empty: the configuration's)", Flag: "--workspace"},
			},
			Then: "/ui/library/{name}",
		})
	}
	f.Page = d
	p.render(w, r, "library.html", f)
}

// undeployedWith returns the names of the undeployed configurations (in
// workspace ws; "" all) on which the user may do action: the sources a
// capture or an archive offers.
func (p *objectPages) undeployedWith(ctx context.Context, action auth.Action, ws string) ([]string, error) {
	cs, err := p.lab.Configs.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cs {
		if c.State != "undeployed" && c.State != "failed" || !inWorkspace(ws, c.Workspace) {
			continue
		}
		ok, err := p.lab.allowed(ctx, action, access.Ref{Kind: access.KindConfig, Name: c.Name})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, c.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

type libraryEntryData struct {
	E       *lab.ConfigView
	Actions []Action
	Size    int64
}

// libraryEntryPage shows one library entry: its VMs and disks; check out
// and delete when allowed.
func (p *objectPages) libraryEntryPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	e, err := readObject(r, p.lab, p.lab.Library, auth.LibraryRead, access.KindLibrary, name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := libraryEntryData{E: e}
	ref := access.Ref{Kind: access.KindLibrary, Name: name}
	o := p.offers(ctx)
	o.add(auth.LibraryCheckout, ref, newConfigAction("library", "checkout", "Check out", objectPath("library", name)+"/checkout", name, name+"-1", "entry",
		"(a linked clone of the entry: small and instant)."))
	o.add(auth.LibraryDelete, ref, deleteAction("library", name, objectPath("library", name), "/ui/library",
		"Layers that checked-out configurations still build on are kept."))
	if d.Actions, err = o.result(); err != nil {
		p.fail(w, r, err)
		return
	}
	p.show(w, r, "library_entry.html", name, "library", d)
}
