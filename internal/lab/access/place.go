package access

import (
	"context"
	"errors"
	"fmt"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Placement is where a new object goes: its workspace and its owner (0:
// the system's). Operations write both on the record they create, in
// their own transaction.
type Placement struct {
	WorkspaceID int64
	OwnerID     int64
}

// Place decides where an object the caller of ctx makes goes, and whether
// they may: the workspace named (see Ref.Workspace), else fallback (the
// workspace of the object it is made from; 0 for none), else the caller's
// default workspace, else default/main; the owner is the caller's user.
// The caller must be allowed action (a *.create, library.capture or
// archive.import) on that workspace. It reads in tx, so an operation can
// place and check in its own transaction.
func (c *Checker) Place(ctx context.Context, tx store.Tx, action auth.Action, kind, workspace string, fallback int64) (Placement, error) {
	id, hasID := auth.FromContext(ctx)
	var ws *store.Workspace
	var err error
	if workspace == "" && fallback != 0 {
		ws, err = tx.Workspaces().GetByID(fallback)
		if errors.Is(err, errdefs.ErrNotFound) {
			ws, err = nil, nil // the source predates workspaces: as if none
		}
	}
	if err == nil && ws == nil {
		ws, err = ResolveWorkspace(tx, id.UserID, workspace)
	}
	if err != nil {
		return Placement{}, err
	}
	p := Placement{WorkspaceID: ws.ID, OwnerID: id.UserID}
	if !hasID || id.SystemAdmin && id.Restrict == nil {
		return p, nil
	}
	in := &auth.Input{Action: action, WorkspaceKind: auth.WorkspaceKind(ws.Kind),
		Object: auth.Object{Kind: kind, WorkspaceID: ws.ID, OrgID: ws.OrgID}}
	v, err := c.viewerIn(tx, id, ws.ID)
	if err != nil {
		return Placement{}, err
	}
	setActor(in, id, v)
	if d := auth.Decide(*in); !d.Allowed {
		return Placement{}, fmt.Errorf("in workspace %q: %w", workspaceName(tx, ws), d.Err())
	}
	return p, nil
}

// CheckQuota refuses, with an errdefs Conflict naming the quota, its use
// and its limit, an addition that would take the owner or the workspace
// of p over their quota (a scope without one is unlimited). addDiskBytes
// is the disk the operation adds, counted against the quota in whole GiB
// as the store counts use. Call it in the transaction that writes the
// addition: the store serialises writers, so two concurrent operations
// cannot both pass on the same room.
func CheckQuota(tx store.Tx, p Placement, add auth.Quota, addDiskBytes int64) error {
	for _, sc := range []struct {
		scope string
		id    int64
	}{{store.QuotaScopeUser, p.OwnerID}, {store.QuotaScopeWorkspace, p.WorkspaceID}} {
		if sc.id == 0 {
			continue
		}
		q, err := tx.Quotas().Get(sc.scope, sc.id)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		use, err := tx.Quotas().Use(sc.scope, sc.id)
		if err != nil {
			return err
		}
		a := add
		if addDiskBytes > 0 {
			const gib = 1 << 30
			a.DiskGiB = (use.DiskBytes+addDiskBytes+gib-1)/gib - use.DiskGiB
		}
		err = auth.CheckQuota(scopeName(tx, sc.scope, sc.id),
			auth.Quota{StoredVMs: use.StoredVMs, DeployedVMs: use.DeployedVMs, VCPUs: use.VCPUs, MemoryMiB: use.MemoryMiB, DiskGiB: use.DiskGiB},
			a,
			auth.Quota{StoredVMs: q.StoredVMs, DeployedVMs: q.DeployedVMs, VCPUs: q.VCPUs, MemoryMiB: q.MemoryMiB, DiskGiB: q.DiskGiB})
		if err != nil {
			return err
		}
	}
	return nil
}

func scopeName(tx store.Tx, scope string, id int64) string {
	if scope == store.QuotaScopeUser {
		if u, err := tx.Users().GetByID(id); err == nil {
			return fmt.Sprintf("user %q", u.Name)
		}
		return fmt.Sprintf("user %d", id)
	}
	if ws, err := tx.Workspaces().GetByID(id); err == nil {
		return fmt.Sprintf("workspace %q", workspaceName(tx, ws))
	}
	return fmt.Sprintf("workspace %d", id)
}

func workspaceName(tx store.Tx, ws *store.Workspace) string {
	org, err := tx.Orgs().GetByID(ws.OrgID)
	if err != nil {
		return ws.Name
	}
	return WorkspaceName(org, ws)
}

// Names turns workspace and user ids into the names views show, reading
// each once per Names (one request; nothing is cached beyond it).
type Names struct {
	tx         store.Tx
	workspaces map[int64]string
	users      map[int64]string
}

// NewNames returns Names reading in tx.
func NewNames(tx store.Tx) *Names {
	return &Names{tx: tx, workspaces: map[int64]string{}, users: map[int64]string{}}
}

// Workspace returns "ws" (organization default) or "org/ws"; "" for 0 or
// a workspace gone.
func (n *Names) Workspace(id int64) string {
	if id == 0 {
		return ""
	}
	if s, ok := n.workspaces[id]; ok {
		return s
	}
	s := ""
	if ws, err := n.tx.Workspaces().GetByID(id); err == nil {
		s = workspaceName(n.tx, ws)
	}
	n.workspaces[id] = s
	return s
}

// User returns the user's name; "" for 0 or a user gone.
func (n *Names) User(id int64) string {
	if id == 0 {
		return ""
	}
	if s, ok := n.users[id]; ok {
		return s
	}
	s := ""
	if u, err := n.tx.Users().GetByID(id); err == nil {
		s = u.Name
	}
	n.users[id] = s
	return s
}
