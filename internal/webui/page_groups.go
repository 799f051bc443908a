package webui

import (
	"net/http"
	"net/url"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// groupMember is a user in a group, with the action removing them.
type groupMember struct {
	User    string
	Actions []Action
}

type groupRow struct {
	Name    string
	Members []groupMember
	Actions []Action
}

type groupsData struct {
	Org     string
	Rows    []groupRow
	Actions []Action
}

// groupsPage lists the groups of organization {org} with their members,
// to whom the API shows them (its admins, the members of its
// workspaces); only its admins are offered to create and delete groups
// and to change their members. An organization not theirs to see: 404.
func (p *adminPages) groupsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := p.lab.adminOf(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := groupsData{Org: r.PathValue("org")}
	var admin bool
	err = p.lab.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Orgs().Get(d.Org)
		if err != nil || !a.seesOrg(o.ID) {
			return errdefs.NotFound("organization %q not found", d.Org)
		}
		admin = a.administersOrg(o.ID)
		d.Rows, err = groupRows(tx, o.ID)
		return err
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if admin {
		d.offerGroupActions()
	}
	p.adminRender(w, r, "admin_groups.html", d.Org+" groups", "orgs", d)
}

// groupRows reads the groups of organization id with their members.
func groupRows(tx store.Tx, id int64) ([]groupRow, error) {
	gs, err := tx.Groups().List(id)
	if err != nil {
		return nil, err
	}
	rows := make([]groupRow, 0, len(gs))
	for _, g := range gs {
		us, err := tx.Groups().Members(g.ID)
		if err != nil {
			return nil, err
		}
		row := groupRow{Name: g.Name}
		for _, u := range us {
			row.Members = append(row.Members, groupMember{User: u.Name})
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// offerGroupActions adds the actions of an organization's admin: create
// a group; delete one, add and remove its members.
func (d *groupsData) offerGroupActions() {
	d.Actions = []Action{{
		Name: "group.create", Label: "New group", Method: http.MethodPost, Path: "/api/v1/groups",
		CLI:     "stagehand group create " + shellQuote(d.Org) + "/{name}",
		Confirm: "A group of users of " + d.Org + ": a configuration shared with it is shared with each of them.",
		Fields: []Field{
			{Name: "org", Kind: FieldHidden, Value: d.Org},
			{Name: "name", Label: "Name", Required: true},
		},
	}}
	for i := range d.Rows {
		g := &d.Rows[i]
		ref := d.Org + "/" + g.Name
		api := "/api/v1/groups/" + url.PathEscape(d.Org) + "/" + url.PathEscape(g.Name)
		del := deleteAction("group", ref, api, "", "Deleting it removes the shares made to it.")
		del.Key = g.Name
		g.Actions = []Action{{
			Name: "group.add-member", Label: "Add member", Method: http.MethodPost, Path: api + "/members", Key: g.Name,
			CLI:     "stagehand group add-member " + shellQuote(ref) + " {user}",
			Confirm: "Add a user to " + ref + ": what is shared with the group is shared with them.",
			Fields:  []Field{{Name: "user", Label: "User", Required: true}},
		}, del}
		for j := range g.Members {
			m := &g.Members[j]
			m.Actions = []Action{{
				Name: "group.remove-member", Label: "Remove", Method: http.MethodDelete, Path: api + "/members/" + url.PathEscape(m.User),
				Danger: true, Key: ref + "/" + m.User,
				CLI:     "stagehand group remove-member " + shellQuote(ref) + " " + shellQuote(m.User),
				Confirm: "Remove " + m.User + " from " + ref + ": they lose what is shared with the group (unless shared with them otherwise).",
			}}
		}
	}
}
