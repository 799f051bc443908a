package webui

import (
	"net/http"
	"strconv"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/units"
)

type cleanupData struct {
	R        *lab.CleanupReport
	IdleDays int
	// Deletable counts the items an apply may delete; Yours those of
	// them the user may delete.
	Deletable, Yours int
	Actions          []Action
}

// deletePerm is the action deleting a cleanup item of each kind takes.
var deletePerm = map[string]auth.Action{
	access.KindConfig: auth.ConfigDelete, access.KindLibrary: auth.LibraryDelete, access.KindArchive: auth.ArchiveDelete,
}

// cleanupPage shows what expired or is idle among what the user may
// see, what deleting each frees and all together; the apply deletes the
// deletable ones the user may delete (the API decides item by item).
func (p *operationPages) cleanupPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := cleanupData{}
	if s := r.URL.Query().Get("idle_days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			p.fail(w, r, errdefs.Invalid("idle days %q is not a count of days", s))
			return
		}
		d.IdleDays = n
	}
	if p.lab.Cleanup == nil {
		p.fail(w, r, errdefs.Unavailable("the cleanup view is not served by this daemon"))
		return
	}
	rep, err := p.lab.Cleanup.Cleanup(ctx, lab.CleanupOptions{IdleDays: d.IdleDays})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d.R = rep
	// The apply deletes what the user may delete among the deletable
	// items: it is offered when there is some.
	for _, it := range rep.Items {
		if !it.Deletable {
			continue
		}
		d.Deletable++
		perm, ok := deletePerm[it.Object]
		if !ok {
			continue
		}
		may, err := p.lab.allowed(ctx, perm, access.Ref{Kind: it.Object, Name: it.Name})
		if err != nil {
			p.fail(w, r, err)
			return
		}
		if may {
			d.Yours++
		}
	}
	if d.Yours > 0 {
		d.Actions = []Action{{
			Name: "cleanup.apply", Label: "Delete what is listed", Method: http.MethodPost, Path: "/api/v1/cleanup", Danger: true,
			CLI: "stagehand cleanup --apply",
			Confirm: "Delete the deletable items listed that you may delete (" + strconv.Itoa(d.Yours) + " of " + strconv.Itoa(d.Deletable) +
				"), freeing up to " + units.Bytes(rep.Frees) + ". A deployed configuration never is. This cannot be undone.",
			Fields: []Field{
				{Name: "idle_days", Label: "Also idle for at least (days)", Kind: FieldNumber, Value: strconv.Itoa(d.IdleDays), Flag: "--idle-days"},
				{Name: "confirm", Label: "Type delete to confirm", Kind: FieldConfirm, Value: "delete", Required: true},
			},
		}}
	}
	p.show(w, r, "cleanup.html", "Cleanup", "cleanup", d)
}
