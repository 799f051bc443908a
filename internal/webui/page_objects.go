package webui

import (
	"net/http"
	"net/url"

	"stagehand/internal/auth"
	"stagehand/internal/lab/access"
)

// objectPages are the pages of the objects beside configurations:
// templates, networks, the library and archives.
type objectPages struct{ *view }

// Pieces the object pages (templates, networks, library, archives) share.

// workspaceField is a create's workspace, the switcher's choice by
// default; empty, the API puts the object in the user's default
// workspace.
func workspaceField(ws string) Field {
	return Field{Name: "workspace", Label: "Workspace (empty: your default)", Value: ws, Flag: "--workspace"}
}

// deleteAction is the delete of one object of kind (its CLI group) at
// the API path, with the typed name as confirmation; then goes to list.
func deleteAction(kind, name, apiPath, list, consequence string) Action {
	return Action{
		Name: kind + ".delete", Label: "Delete", Method: http.MethodDelete, Path: apiPath, Danger: true,
		CLI:     "stagehand " + kind + " delete " + shellQuote(name),
		Confirm: "Delete " + name + ". " + consequence + " This cannot be undone.",
		Fields:  []Field{{Name: "confirm", Label: "Type the name to confirm", Kind: FieldConfirm, Value: name, Required: true}},
		Then:    list,
	}
}

// newConfigAction makes a new configuration from the object name of kind
// (its CLI group) by verb, a POST to apiPath: its fields are the new
// configuration's name (suggested), storage lease and workspace (empty:
// the object's, called what). how ends the dialog's question.
func newConfigAction(kind, verb, label, apiPath, name, suggested, what, how string) Action {
	return Action{
		Name: kind + "." + verb, Label: label, Method: http.MethodPost, Path: apiPath,
		CLI:     "stagehand " + kind + " " + verb + " " + shellQuote(name) + " {name}",
		Confirm: "Make a new configuration from " + name + " " + how,
		Fields: []Field{
			{Name: "name", Label: "New configuration name", Required: true, Value: suggested},
			{Name: "storage_lease", Label: "Storage lease (e.g. 30d, never; empty: the default)", Flag: "--storage-lease"},
			{Name: "workspace", Label: "Workspace (empty: the " + what + "'s)", Flag: "--workspace"},
		},
		Then: "/ui/configs/{name}",
	}
}

// objectPath is the API path of one object: /api/v1/KIND/NAME.
func objectPath(coll, name string) string { return "/api/v1/" + coll + "/" + url.PathEscape(name) }

// inWorkspace reports whether an object of workspace ws is shown when
// the switcher chose chosen ("" shows all).
func inWorkspace(chosen, ws string) bool { return chosen == "" || chosen == ws }

// readObject reads the object name of objs for its page, after the
// check that the caller may do action (its kind's read) on it: refused,
// it answers as the API does, 404 when the object is invisible, 403 when
// forbidden.
func readObject[V any](r *http.Request, l Lab, objs Objects[V], action auth.Action, kind, name string) (*V, error) {
	if err := l.check(r.Context(), action, access.Ref{Kind: kind, Name: name}); err != nil {
		return nil, err
	}
	return objs.Get(r.Context(), name)
}

// sizeOf is the bytes of a list of layers on the host.
func sizeOf(sizes ...int64) int64 {
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}
