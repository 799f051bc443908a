package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// workspacesHandler serves the workspaces: made and deleted by their
// organization's admins, their members managed by their own admins too;
// members see them. A workspace's quota is its organization's admins', a
// user's the system administrator's (see setQuota).
type workspacesHandler struct{ directory }

func (h workspacesHandler) createWorkspace(w http.ResponseWriter, r *http.Request) error {
	var req wire.WorkspaceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := lab.CheckName("workspace", req.Name); err != nil {
		return err
	}
	switch req.Kind {
	case "":
		req.Kind = wire.WorkspaceShared
	case wire.WorkspaceShared, wire.WorkspacePrivate:
	default:
		return errdefs.Invalid("workspace kind %q: want shared or private", req.Kind)
	}
	c := callerOf(r.Context())
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.Workspace, error) {
		o, err := administeredOrg(tx, c, req.Org)
		if err != nil {
			return wire.Workspace{}, err
		}
		ws := store.Workspace{OrgID: o.ID, Name: req.Name, Kind: req.Kind}
		if err := tx.Workspaces().Create(&ws); err != nil {
			return wire.Workspace{}, err
		}
		if err := record(tx, c, "workspace", "create", o.Name+"/"+ws.Name, "kind "+ws.Kind); err != nil {
			return wire.Workspace{}, err
		}
		return wire.Workspace{Org: o.Name, Name: ws.Name, Kind: ws.Kind, CreatedAt: ws.CreatedAt}, nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("workspaces", out.Org)+"/"+out.Name)
	return writeJSON(w, http.StatusCreated, out)
}

// listWorkspaces lists the workspaces the caller may see: all for the
// system administrator, those of the organizations they administer, and
// those they are a member of (a restricted token: its own only).
func (h workspacesHandler) listWorkspaces(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	return viewJSON(w, r, h.store, func(tx store.Tx) ([]wire.Workspace, error) {
		orgID, err := orgQuery(tx, r)
		if err != nil {
			return nil, err
		}
		wss, err := tx.Workspaces().List(orgID)
		if err != nil {
			return nil, err
		}
		keep := func(store.Workspace) bool { return true }
		if !c.admin() {
			v := &store.Viewer{}
			if c.id.UserID != 0 {
				if v, err = tx.Viewers().Load(c.id.UserID); err != nil {
					return nil, err
				}
			}
			keep = func(ws store.Workspace) bool {
				if c.id.Restrict != nil {
					return ws.ID == c.id.Restrict.WorkspaceID
				}
				if v.SystemAdmin || slices.Contains(v.AdminOfOrgs, ws.OrgID) {
					return true
				}
				return slices.ContainsFunc(v.Workspaces, func(m store.ViewerWorkspace) bool { return m.ID == ws.ID })
			}
		}
		n := namesIn(tx)
		out := []wire.Workspace{}
		for _, ws := range wss {
			if !keep(ws) {
				continue
			}
			o, err := n.org(ws.OrgID)
			if err != nil {
				return nil, err
			}
			out = append(out, wire.Workspace{Org: o, Name: ws.Name, Kind: ws.Kind, CreatedAt: ws.CreatedAt})
		}
		return out, nil
	})
}

// pathWorkspace is the workspace reference of path values {org}/{name}.
func pathWorkspace(r *http.Request) string { return r.PathValue("org") + "/" + r.PathValue("name") }

func (h workspacesHandler) getWorkspace(w http.ResponseWriter, r *http.Request) error {
	if err := h.checkWorkspace(r.Context(), auth.StatusRead, pathWorkspace(r)); err != nil {
		return err
	}
	return viewJSON(w, r, h.store, func(tx store.Tx) (out wire.Workspace, err error) {
		o, ws, err := workspaceAt(tx, r)
		if err != nil {
			return out, err
		}
		out = wire.Workspace{Org: o.Name, Name: ws.Name, Kind: ws.Kind, CreatedAt: ws.CreatedAt, Members: []wire.Membership{}}
		ms, err := tx.Memberships().OfWorkspace(ws.ID)
		if err != nil {
			return out, err
		}
		n := namesIn(tx)
		for _, m := range ms {
			u, err := n.user(m.UserID)
			if err != nil {
				return out, err
			}
			out.Members = append(out.Members, wire.Membership{Workspace: o.Name + "/" + ws.Name, User: u, Role: m.Role})
		}
		out.Quota, out.Usage, err = quotaOf(tx, store.QuotaScopeWorkspace, ws.ID)
		return out, err
	})
}

func (h workspacesHandler) deleteWorkspace(w http.ResponseWriter, r *http.Request) error {
	if err := h.checkWorkspace(r.Context(), auth.OrgAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	return h.noContent(w, r, func(tx store.Tx) error {
		o, ws, err := workspaceAt(tx, r)
		if err != nil {
			return err
		}
		if o.Name == store.DefaultOrg && ws.Name == store.MainWorkspace {
			return errdefs.Conflict("workspace %q: the default workspace cannot be deleted", pathWorkspace(r))
		}
		if err := tx.Workspaces().Delete(ws.ID); err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "workspace", "delete", pathWorkspace(r), "")
	})
}

func (h workspacesHandler) addMember(w http.ResponseWriter, r *http.Request) error {
	var req wire.MemberRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return err
	}
	return h.changeMember(w, r, req.User, "add-member", func(tx store.Tx, ws *store.Workspace, u *store.User) (string, error) {
		return fmt.Sprintf("user %s, role %s", u.Name, role), tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: string(role)})
	})
}

func (h workspacesHandler) removeMember(w http.ResponseWriter, r *http.Request) error {
	return h.changeMember(w, r, r.PathValue("user"), "remove-member", func(tx store.Tx, ws *store.Workspace, u *store.User) (string, error) {
		err := tx.Memberships().Delete(u.ID, ws.ID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return "", errdefs.NotFound("user %q is not a member of workspace %q", u.Name, pathWorkspace(r))
		}
		return "user " + u.Name, err
	})
}

// changeMember runs change on the membership of user in workspace
// {org}/{name}, as the workspace's admin.
func (h workspacesHandler) changeMember(w http.ResponseWriter, r *http.Request, user, action string, change func(store.Tx, *store.Workspace, *store.User) (detail string, err error)) error {
	if err := h.checkWorkspace(r.Context(), auth.WorkspaceAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	return h.noContent(w, r, func(tx store.Tx) error {
		_, ws, err := workspaceAt(tx, r)
		if err != nil {
			return err
		}
		u, err := userNamed(tx, user)
		if err != nil {
			return err
		}
		detail, err := change(tx, ws, u)
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "workspace", action, pathWorkspace(r), detail)
	})
}

// setQuota sets a workspace's quota (its organization's admin) or a
// user's (the system administrator: a user's objects may be in any
// organization).
func (h workspacesHandler) setQuota(w http.ResponseWriter, r *http.Request) error {
	var req wire.QuotaRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	l := req.QuotaLimits
	if req.Target == "" {
		return errdefs.Invalid("quota: target is required (a user, or a workspace org/ws)")
	}
	if l.StoredVMs < 0 || l.DeployedVMs < 0 || l.VCPUs < 0 || l.MemoryMiB < 0 || l.DiskGiB < 0 {
		return errdefs.Invalid("quota of %s %q: a limit is 0 (none) or more", req.Scope, req.Target)
	}
	switch req.Scope {
	case wire.QuotaWorkspace:
		if err := h.checkWorkspace(r.Context(), auth.OrgAdmin, req.Target); err != nil {
			return err
		}
	case wire.QuotaUser:
		if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
			return err
		}
	default:
		return errdefs.Invalid("quota scope %q: want user or workspace", req.Scope)
	}
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		var id int64
		if req.Scope == wire.QuotaWorkspace {
			ws, err := access.ResolveWorkspace(tx, 0, req.Target)
			if err != nil {
				return err
			}
			id = ws.ID
		} else {
			u, err := userNamed(tx, req.Target)
			if err != nil {
				return err
			}
			id = u.ID
		}
		var err error
		if l == (wire.QuotaLimits{}) {
			if err = tx.Quotas().Delete(req.Scope, id); errors.Is(err, errdefs.ErrNotFound) {
				err = nil
			}
		} else {
			err = tx.Quotas().Set(&store.Quota{Scope: req.Scope, ScopeID: id, StoredVMs: l.StoredVMs, DeployedVMs: l.DeployedVMs,
				VCPUs: l.VCPUs, MemoryMiB: l.MemoryMiB, DiskGiB: l.DiskGiB})
		}
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), req.Scope, "set-quota", req.Target,
			fmt.Sprintf("stored VMs %d, deployed VMs %d, vCPUs %d, memory %d MiB, disk %d GiB (0: no limit)",
				l.StoredVMs, l.DeployedVMs, l.VCPUs, l.MemoryMiB, l.DiskGiB))
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}
