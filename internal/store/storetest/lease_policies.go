package storetest

import (
	"context"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// testLeasePolicies: one policy per workspace, kept as given, replaced by a
// second Put, listed by workspace, gone with Delete and with its workspace.
func testLeasePolicies(t *testing.T, s store.Store) {
	ctx := context.Background()
	var dev, ops *store.Workspace
	update(t, s, func(tx store.Tx) error {
		o := mustOrg(t, tx, "leasing")
		dev = mustWorkspace(t, tx, o.ID, "dev", store.WorkspaceShared)
		ops = mustWorkspace(t, tx, o.ID, "ops", store.WorkspaceShared)
		for _, p := range []store.LeasePolicy{{WorkspaceID: ops.ID, Policy: `{"steps":[{"step":"suspend","offset":0}]}`},
			{WorkspaceID: dev.ID, Policy: `{"steps":[]}`}, {WorkspaceID: dev.ID, Policy: `{"webhook":{"url":"https://hooks.example/x"}}`}} {
			if err := tx.LeasePolicies().Put(&p); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.LeasePolicies().Get(dev.ID)
		if err != nil {
			return err
		}
		diff(t, "LeasePolicies.Get after a replace", &store.LeasePolicy{WorkspaceID: dev.ID, Policy: `{"webhook":{"url":"https://hooks.example/x"}}`}, got)
		all, err := tx.LeasePolicies().List()
		if err != nil {
			return err
		}
		diff(t, "LeasePolicies.List, by workspace", []store.LeasePolicy{
			{WorkspaceID: dev.ID, Policy: `{"webhook":{"url":"https://hooks.example/x"}}`},
			{WorkspaceID: ops.ID, Policy: `{"steps":[{"step":"suspend","offset":0}]}`}}, all)
		return nil
	})
	wantKind(t, "LeasePolicies.Put of a missing workspace", s.Update(ctx, func(tx store.Tx) error {
		return tx.LeasePolicies().Put(&store.LeasePolicy{WorkspaceID: 987654, Policy: "{}"})
	}), errdefs.ErrConflict)
	update(t, s, func(tx store.Tx) error { return tx.LeasePolicies().Delete(dev.ID) })
	wantKind(t, "LeasePolicies.Delete again", s.Update(ctx, func(tx store.Tx) error { return tx.LeasePolicies().Delete(dev.ID) }), errdefs.ErrNotFound)
	update(t, s, func(tx store.Tx) error { return tx.Workspaces().Delete(ops.ID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.LeasePolicies().Get(ops.ID)
		wantKind(t, "LeasePolicies.Get of a deleted workspace", err, errdefs.ErrNotFound)
		all, err := tx.LeasePolicies().List()
		if err == nil && len(all) != 0 {
			t.Errorf("LeasePolicies.List after deleting both: %+v", all)
		}
		return err
	})
}
