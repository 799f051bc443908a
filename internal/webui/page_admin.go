package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// adminPages are the administration's: users, organizations and
// workspaces, each shown to whom may administer it.
type adminPages struct{ *view }

// The admin pages: users (the system administrator's), organizations
// (their admins'), workspaces with their members and quotas (their
// organization's admins', and a workspace's admins for its members).
// Each page is shown, and each action offered, only to whom the API's
// directory (internal/api/identity.go) allows it; anyone else gets 403
// (or 404 for a workspace they cannot see), as from the API.

// adminSection is one admin page the user may use.
type adminSection struct{ Name, Label, Path string }

var (
	sectionUsers      = adminSection{"users", "Users", "/ui/admin/users"}
	sectionOrgs       = adminSection{"orgs", "Organizations", "/ui/admin/orgs"}
	sectionWorkspaces = adminSection{"workspaces", "Workspaces", "/ui/admin/workspaces"}
)

// adminView is what the caller of ctx administers.
type adminView struct {
	system     bool    // an unrestricted system administrator
	orgs       []int64 // organizations they administer
	workspaces []int64 // workspaces whose members they manage (workspace.admin)
	memberOf   []int64 // organizations they are a member of a workspace of
}

// seesOrg reports whether the organization id is the caller's to see
// (as the API's orgVisible: they administer it or work in it).
func (a adminView) seesOrg(id int64) bool {
	return a.administersOrg(id) || slices.Contains(a.memberOf, id)
}

// administersOrg reports whether the caller is an admin of organization
// id (org.admin): the system administrator of every one.
func (a adminView) administersOrg(id int64) bool {
	return a.system || slices.Contains(a.orgs, id)
}

// adminOf reads what the caller of ctx administers.
func (l Lab) adminOf(ctx context.Context) (adminView, error) {
	var a adminView
	id, ok := auth.FromContext(ctx)
	if !ok || l.Access == nil || l.Store == nil {
		return a, nil
	}
	if id.SystemAdmin && id.Restrict == nil {
		a.system = true
		return a, nil
	}
	v, _, err := l.Access.Viewer(ctx)
	if err != nil {
		return a, err
	}
	if id.Restrict == nil { // a restricted token manages no organization
		a.orgs = v.AdminOfOrgs
	}
	var names []struct {
		id  int64
		ref string
	}
	err = l.Store.View(ctx, func(tx store.Tx) error {
		n := access.NewNames(tx)
		for _, w := range v.Workspaces {
			a.memberOf = append(a.memberOf, w.OrgID)
			names = append(names, struct {
				id  int64
				ref string
			}{w.ID, n.Workspace(w.ID)})
		}
		return nil
	})
	if err != nil {
		return a, err
	}
	for _, w := range names {
		ok, err := l.allowed(ctx, auth.WorkspaceAdmin, access.Ref{Kind: "workspace", Workspace: w.ref})
		if err != nil {
			return a, err
		}
		if ok {
			a.workspaces = append(a.workspaces, w.id)
		}
	}
	return a, nil
}

// adminSections are the admin pages the caller of ctx may use.
func (l Lab) adminSections(ctx context.Context) ([]adminSection, error) {
	a, err := l.adminOf(ctx)
	if err != nil {
		return nil, err
	}
	var out []adminSection
	if a.system {
		out = append(out, sectionUsers)
	}
	if a.system || len(a.orgs) > 0 {
		out = append(out, sectionOrgs)
	}
	if a.system || len(a.orgs) > 0 || len(a.workspaces) > 0 {
		out = append(out, sectionWorkspaces)
	}
	if a.explains() {
		out = append(out, sectionExplain)
	}
	return out, nil
}

type adminFrame struct {
	Sections []adminSection
	Active   string
	Page     any
}

// adminRender renders an admin page with the tabs of the sections the
// user may use.
func (p *adminPages) adminRender(w http.ResponseWriter, r *http.Request, file, title, active string, page any) {
	s, err := p.lab.adminSections(r.Context())
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.show(w, r, file, title, "admin", adminFrame{Sections: s, Active: active, Page: page})
}

// adminPage leads to the first admin page the user may use; 403 when
// none.
func (p *adminPages) adminPage(w http.ResponseWriter, r *http.Request) {
	s, err := p.lab.adminSections(r.Context())
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if len(s) == 0 {
		p.fail(w, r, errdefs.Forbidden("the admin pages are for the administrators of the system, an organization or a workspace"))
		return
	}
	http.Redirect(w, r, s[0].Path, http.StatusSeeOther)
}

// --- users ------------------------------------------------------------------

type userRow struct {
	store.User
	DefaultWorkspace string
	quotaView
	Actions []Action
}

type usersData struct {
	Rows    []userRow
	Actions []Action
}

// usersPage lists the users, for the system administrator only.
func (p *adminPages) usersPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := p.lab.check(ctx, auth.UserAdmin, access.Ref{Kind: access.KindSystem}); err != nil {
		p.fail(w, r, err)
		return
	}
	me, _ := auth.FromContext(ctx)
	var d usersData
	err := p.lab.Store.View(ctx, func(tx store.Tx) error {
		us, err := tx.Users().List()
		if err != nil {
			return err
		}
		n := access.NewNames(tx)
		for _, u := range us {
			row := userRow{User: u, DefaultWorkspace: n.Workspace(u.DefaultWorkspaceID)}
			row.PasswordHash = ""
			if row.quotaView, err = loadQuota(tx, store.QuotaScopeUser, u.ID); err != nil {
				return err
			}
			d.Rows = append(d.Rows, row)
		}
		return nil
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Name < d.Rows[j].Name })
	for i := range d.Rows {
		d.Rows[i].Actions = userActions(&d.Rows[i].User, me.UserID)
	}
	ws, err := p.lab.workspaces(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d.Actions = []Action{{
		Name: "user.create", Label: "New user", Method: http.MethodPost, Path: "/api/v1/users",
		CLI:     "stagehand user create {name}",
		Confirm: "A user signs in with a password, an API token, or single sign-on by their e-mail.",
		Fields: []Field{
			{Name: "name", Label: "Name", Required: true},
			{Name: "email", Label: "E-mail (for single sign-on)", Flag: "--email"},
			{Name: "display_name", Label: "Display name", Flag: "--display-name"},
			{Name: "password", Label: "Password (empty: none)", Kind: FieldPassword},
			{Name: "default_workspace", Label: "Default workspace", Kind: FieldSelect, Options: append([]string{""}, ws...), Flag: "--default-workspace"},
			{Name: "system_admin", Label: "System administrator", Kind: FieldBool, Flag: "--system-admin"},
		},
	}}
	p.adminRender(w, r, "admin_users.html", "Users", "users", d)
}

// userActions are what the system administrator may do to user u, as
// the user me: set their password, disable or enable them (not
// themselves: the API refuses it too).
func userActions(u *store.User, me int64) []Action {
	q := shellQuote(u.Name)
	api := "/api/v1/users/" + url.PathEscape(u.Name)
	out := []Action{{
		Name: "user.set-password", Label: "Set password", Method: http.MethodPut, Path: api + "/password", Key: u.Name,
		CLI:     "stagehand user set-password " + q,
		Confirm: "Give " + u.Name + " a new password (at least 8 characters). Their sessions go on.",
		Fields:  []Field{{Name: "password", Label: "New password", Kind: FieldPassword, Required: true}},
	}}
	if u.ID == me {
		return out
	}
	verb, label := "disable", "Disable"
	if u.Disabled {
		verb, label = "enable", "Enable"
	}
	return append(out, Action{
		Name: "user." + verb, Label: label, Method: http.MethodPatch, Path: api, Key: u.Name, Danger: !u.Disabled,
		CLI:     fmt.Sprintf("stagehand user set %s --disabled=%t", q, !u.Disabled),
		Confirm: map[bool]string{false: "Disable " + u.Name + ": their tokens and sessions are refused from their next request on.", true: "Enable " + u.Name + " again."}[u.Disabled],
		Fields:  []Field{{Name: "disabled", Label: "Disabled", Kind: FieldBool, Value: fmt.Sprint(!u.Disabled)}},
	})
}

// --- organizations ------------------------------------------------------------

type orgRow struct {
	Name       string
	Admins     []string
	Workspaces []string
	Groups     int
	Actions    []Action
}

type orgsData struct {
	Rows    []orgRow
	Actions []Action
}

// orgsPage lists the organizations the user administers (all for the
// system administrator), with their admins and workspaces.
func (p *adminPages) orgsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := p.lab.adminOf(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !a.system && len(a.orgs) == 0 {
		p.fail(w, r, errdefs.Forbidden("organizations are their admins' and the system administrator's"))
		return
	}
	var d orgsData
	err = p.lab.Store.View(ctx, func(tx store.Tx) error {
		orgs, err := tx.Orgs().List()
		if err != nil {
			return err
		}
		for _, o := range orgs {
			if !a.administersOrg(o.ID) {
				continue
			}
			row := orgRow{Name: o.Name}
			admins, err := tx.Orgs().Admins(o.ID)
			if err != nil {
				return err
			}
			for _, u := range admins {
				row.Admins = append(row.Admins, u.Name)
			}
			wss, err := tx.Workspaces().List(o.ID)
			if err != nil {
				return err
			}
			for _, ws := range wss {
				row.Workspaces = append(row.Workspaces, ws.Name)
			}
			gs, err := tx.Groups().List(o.ID)
			if err != nil {
				return err
			}
			row.Groups = len(gs)
			row.Actions = []Action{{
				Name: "org.add-admin", Label: "Add admin", Method: http.MethodPost, Path: "/api/v1/orgs/" + url.PathEscape(o.Name) + "/admins", Key: o.Name,
				CLI:     "stagehand org add-admin " + shellQuote(o.Name) + " {user}",
				Confirm: "Make a user an admin of " + o.Name + ": its workspaces, their members and quotas, its groups.",
				Fields:  []Field{{Name: "user", Label: "User", Required: true}},
			}}
			d.Rows = append(d.Rows, row)
		}
		return nil
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if a.system {
		d.Actions = []Action{{
			Name: "org.create", Label: "New organization", Method: http.MethodPost, Path: "/api/v1/orgs",
			CLI:     "stagehand org create {name}",
			Confirm: "A new organization gets its shared workspace main.",
			Fields:  []Field{{Name: "name", Label: "Name", Required: true}},
		}}
	}
	p.adminRender(w, r, "admin_orgs.html", "Organizations", "orgs", d)
}

// --- workspaces -----------------------------------------------------------------

type workspaceRow struct {
	Org, Name, Kind, Ref string
	Members              int
	OrgAdmin             bool // the user may set its quota, delete it
}

type workspacesData struct {
	Rows    []workspaceRow
	Actions []Action
}

// workspacesPage lists the workspaces the user administers: all of their
// organizations' (all for the system administrator) and those they are
// an admin of.
func (p *adminPages) workspacesPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := p.lab.adminOf(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !a.system && len(a.orgs) == 0 && len(a.workspaces) == 0 {
		p.fail(w, r, errdefs.Forbidden("workspaces are managed by their admins and their organization's"))
		return
	}
	var d workspacesData
	var orgNames []string
	err = p.lab.Store.View(ctx, func(tx store.Tx) error {
		wss, err := tx.Workspaces().List(0)
		if err != nil {
			return err
		}
		n := access.NewNames(tx)
		seenOrg := map[int64]bool{}
		for _, ws := range wss {
			orgAdmin := a.administersOrg(ws.OrgID)
			if !orgAdmin && !slices.Contains(a.workspaces, ws.ID) {
				continue
			}
			o, err := tx.Orgs().GetByID(ws.OrgID)
			if err != nil {
				return err
			}
			ms, err := tx.Memberships().OfWorkspace(ws.ID)
			if err != nil {
				return err
			}
			d.Rows = append(d.Rows, workspaceRow{Org: o.Name, Name: ws.Name, Kind: ws.Kind, Ref: n.Workspace(ws.ID), Members: len(ms), OrgAdmin: orgAdmin})
			if orgAdmin && !seenOrg[o.ID] {
				seenOrg[o.ID] = true
				orgNames = append(orgNames, o.Name)
			}
		}
		if a.system { // every organization, even one without workspaces
			orgs, err := tx.Orgs().List()
			if err != nil {
				return err
			}
			orgNames = orgNames[:0]
			for _, o := range orgs {
				orgNames = append(orgNames, o.Name)
			}
		}
		return nil
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Org+"/"+d.Rows[i].Name < d.Rows[j].Org+"/"+d.Rows[j].Name })
	sort.Strings(orgNames)
	if len(orgNames) > 0 {
		d.Actions = []Action{{
			Name: "workspace.create", Label: "New workspace", Method: http.MethodPost, Path: "/api/v1/workspaces",
			CLI:     "stagehand workspace create {org}/{name}",
			Confirm: "In a shared workspace members see each other's objects; in a private one each sees their own and what is shared with them.",
			Fields: []Field{
				{Name: "org", Label: "Organization", Kind: FieldSelect, Options: orgNames, Value: store.DefaultOrg, Required: true},
				{Name: "name", Label: "Name", Required: true},
				{Name: "kind", Label: "Kind", Kind: FieldSelect, Options: []string{"shared", "private"}, Value: "shared", Flag: "--kind"},
			},
			Then: "/ui/admin/workspaces/{org}/{name}",
		}}
	}
	p.adminRender(w, r, "admin_workspaces.html", "Workspaces", "workspaces", d)
}

type memberRow struct {
	User, Role string
	Actions    []Action
}

type workspaceData struct {
	Org, Name, Kind, Ref string
	Members              []memberRow
	quotaView
	Actions []Action
}

// workspaceAdminPage shows one workspace's members and quota: members
// managed by its admins (workspace.admin), the quota and the delete by
// its organization's (org.admin). Invisible: 404; visible, not
// administered: 403.
func (p *adminPages) workspaceAdminPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	org, name := r.PathValue("org"), r.PathValue("name")
	ref := name
	if org != store.DefaultOrg {
		ref = org + "/" + name
	}
	wsRef := access.Ref{Kind: "workspace", Workspace: org + "/" + name}
	if err := p.lab.check(ctx, auth.WorkspaceAdmin, wsRef); err != nil {
		if errdefs.Kind(err) == errdefs.ErrNotFound {
			err = errdefs.NotFound("workspace %q not found", org+"/"+name)
		}
		p.fail(w, r, err)
		return
	}
	orgAdmin, err := p.lab.allowed(ctx, auth.OrgAdmin, wsRef)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := workspaceData{Org: org, Name: name, Ref: ref}
	err = p.lab.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Orgs().Get(org)
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(o.ID, name)
		if err != nil {
			return err
		}
		d.Kind = ws.Kind
		ms, err := tx.Memberships().OfWorkspace(ws.ID)
		if err != nil {
			return err
		}
		for _, m := range ms {
			u, err := tx.Users().GetByID(m.UserID)
			if err != nil {
				return err
			}
			d.Members = append(d.Members, memberRow{User: u.Name, Role: m.Role})
		}
		d.quotaView, err = loadQuota(tx, store.QuotaScopeWorkspace, ws.ID)
		return err
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	sort.Slice(d.Members, func(i, j int) bool { return d.Members[i].User < d.Members[j].User })
	api := "/api/v1/workspaces/" + url.PathEscape(org) + "/" + url.PathEscape(name)
	wq := shellQuote(org + "/" + name)
	var roles []string
	for _, rl := range auth.Roles() {
		roles = append(roles, string(rl))
	}
	for i := range d.Members {
		m := &d.Members[i]
		m.Actions = []Action{{
			Name: "member.remove", Label: "Remove", Method: http.MethodDelete, Path: api + "/members/" + url.PathEscape(m.User), Danger: true, Key: m.User,
			CLI:     "stagehand workspace remove-member " + wq + " " + shellQuote(m.User),
			Confirm: "Remove " + m.User + " from " + org + "/" + name + ": they lose their role here (what they own stays).",
		}}
	}
	d.Actions = append(d.Actions, Action{
		Name: "member.add", Label: "Add member", Method: http.MethodPost, Path: api + "/members",
		CLI:     "stagehand workspace add-member " + wq + " {user}",
		Confirm: "Give a user a role in " + org + "/" + name + ", or change their role.",
		Fields: []Field{
			{Name: "user", Label: "User", Required: true},
			{Name: "role", Label: "Role", Kind: FieldSelect, Options: roles, Value: string(auth.RoleUser), Required: true, Flag: "--role"},
		},
	})
	if orgAdmin {
		d.Actions = append(d.Actions, quotaAction(store.QuotaScopeWorkspace, org+"/"+name,
			"stagehand workspace set-quota "+wq, "what "+org+"/"+name+" holds", d.quotaView))
		if !(org == store.DefaultOrg && name == store.MainWorkspace) {
			a := deleteAction("workspace", org+"/"+name, api, "/ui/admin/workspaces", "Refused while it holds objects.")
			d.Actions = append(d.Actions, a)
		}
	}
	p.adminRender(w, r, "admin_workspace.html", org+"/"+name, "workspaces", d)
}
