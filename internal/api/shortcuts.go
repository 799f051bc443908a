package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Shortcuts is what the shortcut endpoint needs of the lab
// (lab.Shortcuts).
type Shortcuts interface {
	// Pass runs the shortcut pass over a configuration now (vm "" is
	// every VM).
	Pass(ctx context.Context, config, vm string) (*lab.ShortcutReport, error)
}

// shortcutsHandler serves POST /configs/{name}/shortcut: the background
// shortcut pass run now for one configuration. It rewrites the headers of
// the configuration's layers (and of other clones' sharing its run), an
// edit of its storage.
type shortcutsHandler struct{ lab Shortcuts }

func (h shortcutsHandler) register(r *router) {
	r.route("POST "+wire.APIPrefix+"/configs/{name}/shortcut", auth.ConfigEdit, object("config", "name"), h.pass)
}

func (h shortcutsHandler) pass(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Pass(r.Context(), r.PathValue("name"), r.URL.Query().Get("vm"))
	if err != nil {
		return err
	}
	out := wire.ShortcutReport{Config: rep.Config, Built: []wire.ShortcutBuilt{},
		Rebased: nonNil(rep.Rebased), Switched: nonNil(rep.Switched), Released: nonNil(rep.Released)}
	for _, b := range rep.Built {
		out.Built = append(out.Built, wire.ShortcutBuilt{Path: b.Path, ShortcutRun: *shortcutRunToWire(&b)})
	}
	return writeJSON(w, http.StatusOK, out)
}

// shortcutRunToWire is the run a shortcut layer stands for; nil for other
// layers.
func shortcutRunToWire(v *lab.ShortcutView) *wire.ShortcutRun {
	if v == nil {
		return nil
	}
	return &wire.ShortcutRun{RunTop: v.RunTop, RunBottom: v.RunBottom, Layers: v.Layers}
}
