package webui

import (
	"net/http"

	"stagehand/internal/auth"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

type userData struct {
	store.User
	DefaultWorkspace string
	Groups           []string // org/group
	quotaView
	Actions []Action
}

// userPage shows one user for the system administrator: their record,
// groups and quota (what they own, in any workspace), with the actions of
// their row on the users page and setting their quota.
func (p *adminPages) userPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := p.lab.check(ctx, auth.UserAdmin, access.Ref{Kind: access.KindSystem}); err != nil {
		p.fail(w, r, err)
		return
	}
	var d userData
	err := p.lab.Store.View(ctx, func(tx store.Tx) error {
		u, err := tx.Users().Get(r.PathValue("name"))
		if err != nil {
			return err
		}
		d.User, d.DefaultWorkspace = *u, access.NewNames(tx).Workspace(u.DefaultWorkspaceID)
		d.PasswordHash = ""
		if d.Groups, err = groupsOf(tx, u.ID); err != nil {
			return err
		}
		d.quotaView, err = loadQuota(tx, store.QuotaScopeUser, u.ID)
		return err
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	me, _ := auth.FromContext(ctx)
	d.Actions = append(userActions(&d.User, me.UserID), quotaAction(store.QuotaScopeUser, d.Name,
		"stagehand workspace set-quota --user "+shellQuote(d.Name), "what "+d.Name+" owns, in any workspace", d.quotaView))
	p.adminRender(w, r, "admin_user.html", d.Name, "users", d)
}

// groupsOf names the groups of user id, org/group.
func groupsOf(tx store.Tx, id int64) ([]string, error) {
	gs, err := tx.Groups().OfUser(id)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range gs {
		o, err := tx.Orgs().GetByID(g.OrgID)
		if err != nil {
			return nil, err
		}
		out = append(out, o.Name+"/"+g.Name)
	}
	return out, nil
}
