package api

import (
	"errors"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// orgsHandler serves the organizations: made by the system administrator
// and run by their admins (admins, workspaces, quotas of workspaces,
// groups). Anyone lists those they administer or work in.
type orgsHandler struct{ directory }

func (h orgsHandler) createOrg(w http.ResponseWriter, r *http.Request) error {
	var req wire.OrgRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := h.needSystemAdmin(r.Context(), auth.OrgAdmin); err != nil {
		return err
	}
	if err := lab.CheckName("organization", req.Name); err != nil {
		return err
	}
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.Org, error) {
		o := store.Org{Name: req.Name}
		if err := tx.Orgs().Create(&o); err != nil {
			return wire.Org{}, err
		}
		// Every organization has its shared workspace main (the issue's
		// rule; default/main is the store's own).
		if err := tx.Workspaces().Create(&store.Workspace{OrgID: o.ID, Name: store.MainWorkspace, Kind: store.WorkspaceShared}); err != nil {
			return wire.Org{}, err
		}
		if err := record(tx, callerOf(r.Context()), "org", "create", o.Name, ""); err != nil {
			return wire.Org{}, err
		}
		return orgToWire(tx, &o)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("orgs", req.Name))
	return writeJSON(w, http.StatusCreated, out)
}

func orgToWire(tx store.Tx, o *store.Org) (wire.Org, error) {
	out := wire.Org{Name: o.Name, CreatedAt: o.CreatedAt, Admins: []string{}, Workspaces: []string{}, Groups: []string{}}
	admins, err := tx.Orgs().Admins(o.ID)
	if err != nil {
		return out, err
	}
	for _, u := range admins {
		out.Admins = append(out.Admins, u.Name)
	}
	wss, err := tx.Workspaces().List(o.ID)
	if err != nil {
		return out, err
	}
	for _, ws := range wss {
		out.Workspaces = append(out.Workspaces, ws.Name)
	}
	gs, err := tx.Groups().List(o.ID)
	if err != nil {
		return out, err
	}
	for _, g := range gs {
		out.Groups = append(out.Groups, g.Name)
	}
	return out, nil
}

// listOrgs lists the organizations the caller administers or is a member
// of a workspace of (all for the system administrator).
func (h orgsHandler) listOrgs(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	return viewJSON(w, r, h.store, func(tx store.Tx) ([]wire.Org, error) {
		orgs, err := tx.Orgs().List()
		if err != nil {
			return nil, err
		}
		out := []wire.Org{}
		for i := range orgs {
			if ok, err := orgVisible(tx, c, &orgs[i]); err != nil || !ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			wo, err := orgToWire(tx, &orgs[i])
			if err != nil {
				return nil, err
			}
			out = append(out, wo)
		}
		return out, nil
	})
}

func (h orgsHandler) addOrgAdmin(w http.ResponseWriter, r *http.Request) error {
	var req wire.OrgAdminRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return h.changeAdmins(w, r, req.User, "add-admin", func(tx store.Tx, o *store.Org, u *store.User) error {
		return tx.Orgs().AddAdmin(o.ID, u.ID)
	})
}

func (h orgsHandler) removeOrgAdmin(w http.ResponseWriter, r *http.Request) error {
	return h.changeAdmins(w, r, r.PathValue("user"), "remove-admin", func(tx store.Tx, o *store.Org, u *store.User) error {
		return tx.Orgs().RemoveAdmin(o.ID, u.ID)
	})
}

// changeAdmins changes the admins of organization {org}, as its admin.
func (h orgsHandler) changeAdmins(w http.ResponseWriter, r *http.Request, user, action string, change func(store.Tx, *store.Org, *store.User) error) error {
	c := callerOf(r.Context())
	return h.noContent(w, r, func(tx store.Tx) error {
		o, err := administeredOrg(tx, c, r.PathValue("org"))
		if err != nil {
			return err
		}
		u, err := userNamed(tx, user)
		if err != nil {
			return err
		}
		if err := change(tx, o, u); err != nil {
			return err
		}
		return record(tx, c, "org", action, o.Name, "user "+u.Name)
	})
}

// --- groups ---------------------------------------------------------------

// groupsHandler serves the groups of users an organization's admins keep
// (configurations are shared with them); anyone lists the groups of the
// organizations they see.
type groupsHandler struct{ directory }

func (h groupsHandler) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req wire.GroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := lab.CheckName("group", req.Name); err != nil {
		return err
	}
	c := callerOf(r.Context())
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.Group, error) {
		o, err := administeredOrg(tx, c, req.Org)
		if err != nil {
			return wire.Group{}, err
		}
		g := store.Group{OrgID: o.ID, Name: req.Name}
		if err := tx.Groups().Create(&g); err != nil {
			return wire.Group{}, err
		}
		if err := record(tx, c, "group", "create", o.Name+"/"+g.Name, ""); err != nil {
			return wire.Group{}, err
		}
		return wire.Group{Org: o.Name, Name: g.Name, Members: []string{}, CreatedAt: g.CreatedAt}, nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("groups", out.Org)+"/"+out.Name)
	return writeJSON(w, http.StatusCreated, out)
}

// listGroups lists the groups of the organizations the caller may see
// (see listOrgs), with their members.
func (h groupsHandler) listGroups(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	return viewJSON(w, r, h.store, func(tx store.Tx) ([]wire.Group, error) {
		orgID, err := orgQuery(tx, r)
		if err != nil {
			return nil, err
		}
		gs, err := tx.Groups().List(orgID)
		if err != nil {
			return nil, err
		}
		out := []wire.Group{}
		visible := map[int64]bool{}
		for _, g := range gs {
			ok, seen := visible[g.OrgID]
			if !seen {
				o, err := tx.Orgs().GetByID(g.OrgID)
				if err != nil {
					return nil, err
				}
				if ok, err = orgVisible(tx, c, o); err != nil {
					return nil, err
				}
				visible[g.OrgID] = ok
			}
			if !ok {
				continue
			}
			wg, err := groupToWire(tx, &g)
			if err != nil {
				return nil, err
			}
			out = append(out, wg)
		}
		return out, nil
	})
}

func groupToWire(tx store.Tx, g *store.Group) (wire.Group, error) {
	o, err := tx.Orgs().GetByID(g.OrgID)
	if err != nil {
		return wire.Group{}, err
	}
	out := wire.Group{Org: o.Name, Name: g.Name, Members: []string{}, CreatedAt: g.CreatedAt}
	us, err := tx.Groups().Members(g.ID)
	if err != nil {
		return out, err
	}
	for _, u := range us {
		out.Members = append(out.Members, u.Name)
	}
	return out, nil
}

// changeGroup runs change on group {org}/{name}, as its organization's
// admin.
func (h groupsHandler) changeGroup(w http.ResponseWriter, r *http.Request, action string, change func(store.Tx, *store.Group) (detail string, err error)) error {
	c := callerOf(r.Context())
	return h.noContent(w, r, func(tx store.Tx) error {
		o, err := administeredOrg(tx, c, r.PathValue("org"))
		if err != nil {
			return err
		}
		g, err := tx.Groups().Get(o.ID, r.PathValue("name"))
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.NotFound("group %q not found", o.Name+"/"+r.PathValue("name"))
		}
		if err != nil {
			return err
		}
		detail, err := change(tx, g)
		if err != nil {
			return err
		}
		return record(tx, c, "group", action, o.Name+"/"+g.Name, detail)
	})
}

func (h groupsHandler) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	return h.changeGroup(w, r, "delete", func(tx store.Tx, g *store.Group) (string, error) { return "", tx.Groups().Delete(g.ID) })
}

func (h groupsHandler) addGroupMember(w http.ResponseWriter, r *http.Request) error {
	var req wire.GroupMemberRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return h.changeGroup(w, r, "add-member", func(tx store.Tx, g *store.Group) (string, error) {
		u, err := userNamed(tx, req.User)
		if err != nil {
			return "", err
		}
		return "user " + u.Name, tx.Groups().AddMember(g.ID, u.ID)
	})
}

func (h groupsHandler) removeGroupMember(w http.ResponseWriter, r *http.Request) error {
	return h.changeGroup(w, r, "remove-member", func(tx store.Tx, g *store.Group) (string, error) {
		u, err := userNamed(tx, r.PathValue("user"))
		if err != nil {
			return "", err
		}
		return "user " + u.Name, tx.Groups().RemoveMember(g.ID, u.ID)
	})
}
