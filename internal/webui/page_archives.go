package webui

import (
	"net/http"
	"sort"

	"stagehand/internal/auth"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
)

type archivesData struct {
	Rows      []lab.ArchiveView
	Actions   []Action
	Workspace string
	After     int64
}

// archivesPage lists the archives the user may see, with archiving a
// configuration and importing a bundle (an upload) when allowed.
func (p *objectPages) archivesPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, after, err := p.listFrame(r, "Archives", "archives")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := archivesData{Workspace: f.Workspace, After: after}
	as, err := p.lab.Archives.List(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	for _, a := range as {
		if inWorkspace(f.Workspace, a.Workspace) {
			d.Rows = append(d.Rows, a)
		}
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Name < d.Rows[j].Name })
	srcs, err := p.undeployedWith(ctx, auth.ArchiveCreate, f.Workspace)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if len(srcs) > 0 {
		d.Actions = append(d.Actions, Action{
			Name: "archive.create", Label: "Archive a configuration", Method: http.MethodPost, Path: "/api/v1/archives",
			CLI:     "stagehand archive create {config} {name}",
			Confirm: "Copy an undeployed configuration into archive storage, consolidated and portable (a job).",
			Fields: []Field{
				{Name: "config", Label: "Configuration", Kind: FieldSelect, Options: srcs, Required: true},
				{Name: "name", Label: "Archive name", Required: true},
				{Name: "with_snapshots", Label: "With its snapshot tree and saved VM states", Kind: FieldBool, Flag: "--with-snapshots"},
				{Name: "storage_lease", Label: "Storage lease (e.g. 90d, never; empty: the default)", Flag: "--storage-lease"},
				{Name: "workspace", Label: "Workspace (empty: the configuration's)", Flag: "--workspace"},
			},
			Then: "/ui/archives/{name}",
		})
	}
	o := p.offers(ctx)
	o.add(auth.ArchiveImport, access.Ref{Kind: access.KindArchive, Workspace: f.Workspace}, Action{
		Name: "archive.import", Label: "Import a bundle", Method: http.MethodPost, Path: "/api/v1/archives/upload",
		Upload:  UploadRaw,
		CLI:     "stagehand archive import",
		Confirm: "Upload a bundle (made by archive export) from this computer as a new archive; its SHA-256 is computed here first and checked by the daemon. The import runs as a job.",
		Fields: []Field{
			{Name: "bundle", Label: "Bundle (.tar)", Kind: FieldFile, Required: true},
			{Name: "name", Label: "Archive name (empty: the bundle's)", Flag: "--name"},
			{Name: "map_network", Label: "Map a network OLD=NEW (optional)", Flag: "--map-network"},
			{Name: "storage_lease", Label: "Storage lease (e.g. 90d, never; empty: the default)", Flag: "--storage-lease"},
			workspaceField(f.Workspace),
		},
	})
	more, err := o.result()
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d.Actions = append(d.Actions, more...)
	f.Page = d
	p.render(w, r, "archives.html", f)
}

type archiveData struct {
	A       *lab.ArchiveView
	Actions []Action
	// Export is the bundle's download address when the user may export.
	Export string
}

// archivePage shows one archive; restore, export (a browser download)
// and delete when allowed.
func (p *objectPages) archivePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	a, err := readObject(r, p.lab, p.lab.Archives, auth.ArchiveRead, access.KindArchive, name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := archiveData{A: a}
	ref := access.Ref{Kind: access.KindArchive, Name: name}
	o := p.offers(ctx)
	o.add(auth.ArchiveRestore, ref, newConfigAction("archive", "restore", "Restore", objectPath("archives", name)+"/restore",
		name, a.Source+"-restored", "archive", "by copying its disks back (a job)."))
	o.add(auth.ArchiveDelete, ref, deleteAction("archive", name, objectPath("archives", name), "/ui/archives",
		"Its files in archive storage are removed."))
	if d.Actions, err = o.result(); err != nil {
		p.fail(w, r, err)
		return
	}
	ok, err := p.lab.allowed(ctx, auth.ArchiveExport, ref)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if ok {
		d.Export = objectPath("archives", name) + "/bundle"
	}
	p.show(w, r, "archive.html", name, "archives", d)
}
