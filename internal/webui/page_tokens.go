package webui

import (
	"net/http"
	"sort"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

type tokenRow struct {
	ID, Name, State, Workspace, MaxRole string
	Created, Expires, LastUsed          time.Time
	Actions                             []Action
}

type tokensData struct {
	User    string
	Rows    []tokenRow
	Actions []Action
}

// tokensPage lists the signed-in user's own API tokens (never their
// secrets), with create (the secret shown once) and revoke.
func (p *accountPages) tokensPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, _ := auth.FromContext(ctx)
	d := tokensData{User: id.Name}
	if id.UserID != 0 && p.lab.Store != nil {
		now := time.Now()
		err := p.lab.Store.View(ctx, func(tx store.Tx) error {
			tks, err := tx.Tokens().List(id.UserID)
			if err != nil {
				return err
			}
			n := access.NewNames(tx)
			for _, tk := range tks {
				if tk.Kind != store.TokenAPI {
					continue
				}
				row := tokenRow{ID: tk.ID, Name: tk.Name, State: "active", Workspace: n.Workspace(tk.RestrictWorkspaceID), MaxRole: tk.RestrictRole,
					Created: tk.CreatedAt, Expires: tk.ExpiresAt, LastUsed: tk.LastUsedAt}
				switch {
				case !tk.RevokedAt.IsZero():
					row.State = "revoked"
				case !tk.ExpiresAt.IsZero() && now.After(tk.ExpiresAt):
					row.State = "expired"
				}
				if row.State == "active" {
					row.Actions = []Action{{
						Name: "token.revoke", Label: "Revoke", Method: http.MethodDelete, Path: "/api/v1/tokens/" + tk.ID, Danger: true, Key: tk.ID,
						CLI:     "stagehand token revoke " + tk.ID,
						Confirm: "Revoke " + tk.Name + ": every request with it is refused from now on.",
					}}
				}
				d.Rows = append(d.Rows, row)
			}
			return nil
		})
		if err != nil {
			p.fail(w, r, err)
			return
		}
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Created.After(d.Rows[j].Created) })
	ws, err := p.lab.workspaces(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	roles := []string{""}
	for _, rl := range auth.Roles() {
		roles = append(roles, string(rl))
	}
	d.Actions = []Action{{
		Name: "token.create", Label: "New token", Method: http.MethodPost, Path: "/api/v1/tokens", Show: "token",
		CLI:     "stagehand token create {name}",
		Confirm: "An API token for scripts and the CLI (STAGEHAND_TOKEN). Restricted to a workspace, it acts there only, with at most the role given.",
		Fields: []Field{
			{Name: "name", Label: "Name", Required: true},
			{Name: "expires_in", Label: "Expires in (e.g. 30d, 12h; empty: 90 days)", Flag: "--expires-in"},
			{Name: "workspace", Label: "Only in workspace", Kind: FieldSelect, Options: append([]string{""}, ws...), Flag: "--workspace"},
			{Name: "max_role", Label: "At most the role (with a workspace)", Kind: FieldSelect, Options: roles, Flag: "--max-role"},
		},
	}}
	p.show(w, r, "tokens.html", "Tokens", "tokens", d)
}
