package webui

import (
	"net/http"
	"sort"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
)

type templatesData struct {
	Rows      []templateRow
	Actions   []Action
	Workspace string
	After     int64
}

type templateRow struct {
	lab.TemplateView
	Size int64 // bytes of its base layers on the host
}

func templateRowOf(t lab.TemplateView) templateRow {
	row := templateRow{TemplateView: t}
	for _, d := range t.Disks {
		row.Size += d.ActualSize
	}
	return row
}

// templatesPage lists the templates the user may see, with the import
// (an upload from the browser) when they may create one.
func (p *objectPages) templatesPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, after, err := p.listFrame(r, "Templates", "templates")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := templatesData{Workspace: f.Workspace, After: after}
	ts, err := p.lab.Templates.List(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	for _, t := range ts {
		if inWorkspace(f.Workspace, t.Workspace) {
			d.Rows = append(d.Rows, templateRowOf(t))
		}
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Name < d.Rows[j].Name })
	o := p.offers(ctx)
	o.add(auth.TemplateCreate, access.Ref{Kind: access.KindTemplate, Workspace: f.Workspace}, Action{
		Name: "template.import", Label: "Import template", Method: http.MethodPost, Path: "/api/v1/templates/upload",
		Upload:  UploadMultipart,
		CLI:     "stagehand template import {name}",
		Confirm: "Upload disk images from this computer as a new template (their SHA-256 is computed here first and checked by the daemon).",
		Fields: []Field{
			{Name: "name", Label: "Name", Required: true},
			{Name: "disk", Label: "Disk images, in disk order", Kind: FieldFile, Part: wire.PartDisk, Multiple: true, Required: true, Flag: "--disk"},
			{Name: "format", Label: "Format", Kind: FieldSelect, Options: []string{"", "qcow2", "raw"}, Flag: "--format",
				Help: "empty: detected from the file's bytes"},
			{Name: "cpus", Label: "CPUs (default 1)", Kind: FieldNumber, Flag: "--cpus"},
			{Name: "memory_mib", Label: "Memory in MiB (default 256)", Kind: FieldNumber, Flag: "--memory"},
			{Name: "kernel", Label: "Kernel (direct kernel boot, optional)", Kind: FieldFile, Part: wire.PartKernel, Flag: "--kernel"},
			{Name: "initrd", Label: "Initrd (optional)", Kind: FieldFile, Part: wire.PartInitrd, Flag: "--initrd"},
			{Name: "cmdline", Label: "Kernel command line", Flag: "--cmdline"},
			{Name: "description", Label: "Description", Flag: "--description"},
			workspaceField(f.Workspace),
		},
		Then: "/ui/templates/{name}",
	})
	if d.Actions, err = o.result(); err != nil {
		p.fail(w, r, err)
		return
	}
	f.Page = d
	p.render(w, r, "templates.html", f)
}

type templateData struct {
	T       *lab.TemplateView
	Size    int64
	Actions []Action
	// UsedBy are the configurations the user may see that run the
	// template.
	UsedBy []string
}

// templatePage shows one template: its base layers, boot settings and
// who uses it; delete when allowed.
func (p *objectPages) templatePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	t, err := readObject(r, p.lab, p.lab.Templates, auth.TemplateRead, access.KindTemplate, name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := templateData{T: t, Size: templateRowOf(*t).Size}
	cs, err := p.lab.Configs.List(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	for _, c := range cs {
		for _, v := range c.VMs {
			if v.Template == name {
				d.UsedBy = append(d.UsedBy, c.Name)
				break
			}
		}
	}
	sort.Strings(d.UsedBy)
	o := p.offers(ctx)
	o.add(auth.TemplateDelete, access.Ref{Kind: access.KindTemplate, Name: name},
		deleteAction("template", name, objectPath("templates", name), "/ui/templates",
			"A template that configurations or library entries still build on is refused."))
	if d.Actions, err = o.result(); err != nil {
		p.fail(w, r, err)
		return
	}
	p.show(w, r, "template.html", name, "templates", d)
}
