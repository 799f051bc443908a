package lab

import (
	"context"
	"slices"

	"stagehand/internal/auth"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// Ownership: every object a caller makes goes to a workspace and is owned
// by the caller's user (access.Checker.Place decides where, and whether
// the caller may create there); the operation writes both on the record
// it creates, in its own transaction, with the quotas checked there too.

// placer decides, in a read transaction of its own, where an object the
// caller of ctx makes goes (access.Checker.Place). Operations ask it
// before they touch a file, so a refused create costs nothing.
type placer struct {
	store  store.Store
	access *access.Checker
}

// place decides where an object goes; fallback is the workspace of the
// object it is made from (0: none).
func (p placer) place(ctx context.Context, action auth.Action, kind, workspace string, fallback int64) (access.Placement, error) {
	return p.placeFrom(ctx, action, kind, workspace, func(store.Tx) (int64, error) { return fallback, nil })
}

// placeFrom is place with the fallback workspace read by source in the
// same transaction (the workspace of the object an operation copies).
func (p placer) placeFrom(ctx context.Context, action auth.Action, kind, workspace string, source func(store.Tx) (int64, error)) (access.Placement, error) {
	var pl access.Placement
	err := p.store.View(ctx, func(tx store.Tx) error {
		fallback, err := source(tx)
		if err != nil {
			return err
		}
		pl, err = p.access.Place(ctx, tx, action, kind, workspace, fallback)
		return err
	})
	return pl, err
}

// storedQuota checks, inside the transaction that writes them, that vms
// new stored VMs whose disks add diskBytes fit the quotas of p's owner and
// workspace.
func storedQuota(tx store.Tx, p access.Placement, vms int, diskBytes int64) error {
	return access.CheckQuota(tx, p, auth.Quota{StoredVMs: int64(vms)}, diskBytes)
}

// deployQuota checks, inside the transaction that marks c deploying, that
// its VMs, vCPUs and memory fit the quotas of its owner and workspace.
func deployQuota(tx store.Tx, c *store.Config) error {
	add := auth.Quota{DeployedVMs: int64(len(c.VMs))}
	for _, vm := range c.VMs {
		add.VCPUs += int64(vm.CPUs)
		add.MemoryMiB += int64(vm.MemoryMiB)
	}
	return access.CheckQuota(tx, access.Placement{WorkspaceID: c.WorkspaceID, OwnerID: c.OwnerID}, add, 0)
}

// owned fills a view's Workspace and Owner from the record's ids; owner
// is the text an object without an owning user shows.
func owned(names *access.Names, workspaceID, ownerID int64, text string) (workspace, owner string) {
	owner = names.User(ownerID)
	if owner == "" {
		owner = text
	}
	return names.Workspace(workspaceID), owner
}

// The lists, filtered in the store's query to what the caller may see
// (scope from access.Checker.Scope), and by workspace for a restricted
// token.

func listTemplates(tx store.Tx, sc access.Scope) ([]store.Template, error) {
	if sc.All {
		return tx.Templates().List()
	}
	ts, err := tx.Visible().Templates(sc.Viewer)
	return slices.DeleteFunc(ts, func(t store.Template) bool { return !sc.Keep(t.WorkspaceID) }), err
}

func listNetworks(tx store.Tx, sc access.Scope) ([]store.Network, error) {
	if sc.All {
		return tx.Networks().List()
	}
	ns, err := tx.Visible().Networks(sc.Viewer)
	return slices.DeleteFunc(ns, func(n store.Network) bool { return !sc.Keep(n.WorkspaceID) }), err
}

func listConfigs(tx store.Tx, sc access.Scope) ([]store.Config, error) {
	if sc.All {
		return tx.Configs().List()
	}
	cs, err := tx.Visible().Configs(sc.Viewer)
	return slices.DeleteFunc(cs, func(c store.Config) bool { return !sc.Keep(c.WorkspaceID) }), err
}

func listArchives(tx store.Tx, sc access.Scope) ([]store.Archive, error) {
	if sc.All {
		return tx.Archives().List()
	}
	as, err := tx.Visible().Archives(sc.Viewer)
	return slices.DeleteFunc(as, func(a store.Archive) bool { return !sc.Keep(a.WorkspaceID) }), err
}

// inWorkspace keeps the items of a list in the workspace named name ("ws"
// in organization default, or "org/ws"; "" keeps every item), which must
// exist. wsOf is an item's workspace id.
func inWorkspace[T any](tx store.Tx, name string, items []T, wsOf func(*T) int64) ([]T, error) {
	if name == "" {
		return items, nil
	}
	ws, err := access.ResolveWorkspace(tx, 0, name)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(items, func(it T) bool { return wsOf(&it) != ws.ID }), nil
}
