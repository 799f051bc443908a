package store

import (
	"strings"

	"stagehand/internal/errdefs"
)

// The rules a record must meet before a store writes it. Both stores
// (SQLite and PostgreSQL) call them, so that they refuse the same records
// with the same words; what only the database can check (uniqueness,
// references) stays with each store.

// NeedName refuses an empty or blank name of the thing what.
func NeedName(what, name string) error {
	if strings.TrimSpace(name) == "" {
		return errdefs.Invalid("%s: a name is required", what)
	}
	return nil
}

// Check refuses a workspace without a name or of an unknown kind.
func (w *Workspace) Check() error {
	if err := NeedName("workspace", w.Name); err != nil {
		return err
	}
	if w.Kind != WorkspaceShared && w.Kind != WorkspacePrivate {
		return errdefs.Invalid("workspace %q: kind %q: want shared or private", w.Name, w.Kind)
	}
	return nil
}

// Check refuses a token without an id or a hash, of an unknown kind, or a
// console token that does not name exactly one configuration and VM (and
// any other token that does).
func (tk *Token) Check() error {
	switch {
	case tk.ID == "":
		return errdefs.Invalid("token %q: an id is required", tk.Name)
	case len(tk.Hash) == 0:
		return errdefs.Invalid("token %q: a hash is required", tk.Name)
	case tk.Kind != TokenAPI && tk.Kind != TokenSession && tk.Kind != TokenConsole:
		return errdefs.Invalid("token %q: kind %q: want api, session or console", tk.Name, tk.Kind)
	case (tk.Kind == TokenConsole) != (tk.ConsoleConfigID != 0 && tk.ConsoleVM != ""):
		return errdefs.Invalid("token %q: a console token, and only one, names a configuration and a VM", tk.Name)
	}
	return nil
}
