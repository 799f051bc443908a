package storetest

import (
	"context"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// testSnapshots: a snapshot tree round-trips with its disks and states;
// names are unique per configuration; a named layer cannot be deleted;
// WithLayer finds who names a layer; a parent with children is refused
// until they are re-parented; deleting the configuration deletes its
// snapshots.
func testSnapshots(t *testing.T, s store.Store) {
	f := newConfigFixture(t, s)
	web := f.webConfig()
	update(t, s, func(tx store.Tx) error { return tx.Configs().Create(&web) })
	db, app := web.VMs[0], web.VMs[1]
	root := store.Snapshot{ConfigID: web.ID, Name: "before-upgrade", WithState: true,
		Disks: []store.SnapshotDisk{
			{VMID: db.ID, Index: 0, LayerID: f.layers[4].ID},
			{VMID: db.ID, Index: 1, LayerID: f.layers[5].ID},
			{VMID: app.ID, Index: 0, LayerID: f.layers[6].ID},
		},
		States: []store.SnapshotState{{VMID: db.ID, Path: "snapshots/a-db.state"}, {VMID: app.ID, Path: "snapshots/a-app.state"}},
	}
	update(t, s, func(tx store.Tx) error { return tx.Snapshots().Create(&root) })
	if root.ID == 0 || root.CreatedAt.IsZero() {
		t.Fatalf("Snapshots.Create: ID %d, CreatedAt %v; want both set", root.ID, root.CreatedAt)
	}
	child := store.Snapshot{ConfigID: web.ID, ParentID: root.ID, Name: "after", CreatedAt: someTime,
		Disks: []store.SnapshotDisk{{VMID: app.ID, Index: 0, LayerID: f.layers[4].ID}}}
	update(t, s, func(tx store.Tx) error { return tx.Snapshots().Create(&child) })

	ctx := context.Background()
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Snapshots().Get(web.ID, "before-upgrade")
		if err != nil {
			return err
		}
		diff(t, "Snapshots.Get", &root, got)
		all, err := tx.Snapshots().List(web.ID)
		if err != nil {
			return err
		}
		diff(t, "Snapshots.List", []store.Snapshot{root, child}, all)
		every, err := tx.Snapshots().List(0)
		if err != nil {
			return err
		}
		diff(t, "Snapshots.List(0)", []store.Snapshot{root, child}, every)
		named, err := tx.Snapshots().WithLayer(f.layers[4].ID)
		if err != nil {
			return err
		}
		diff(t, "Snapshots.WithLayer", []store.Snapshot{root, child}, named)
		none, err := tx.Snapshots().WithLayer(f.layers[1].ID)
		if err != nil {
			return err
		}
		diff(t, "Snapshots.WithLayer of an unnamed layer", []store.Snapshot(nil), none)
		_, err = tx.Snapshots().Get(web.ID, "nope")
		wantKind(t, "Snapshots.Get of a missing name", err, errdefs.ErrNotFound, "nope")
		return nil
	})
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Snapshots().Create(&store.Snapshot{ConfigID: web.ID, Name: "after"})
	})
	wantKind(t, "Snapshots.Create of a taken name", err, errdefs.ErrConflict, "after")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Snapshots().Create(&store.Snapshot{ConfigID: web.ID}) })
	wantKind(t, "Snapshots.Create without a name", err, errdefs.ErrInvalid)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Delete(f.layers[6].ID) })
	wantKind(t, "Layers.Delete of a layer a snapshot names", err, errdefs.ErrConflict)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Snapshots().Delete(root.ID) })
	wantKind(t, "Snapshots.Delete of a parent", err, errdefs.ErrConflict)

	// Re-parent the child, then the root goes.
	update(t, s, func(tx store.Tx) error {
		if err := tx.Snapshots().SetParent(child.ID, 0); err != nil {
			return err
		}
		return tx.Snapshots().Delete(root.ID)
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Snapshots().SetParent(root.ID, 0) })
	wantKind(t, "Snapshots.SetParent of a missing snapshot", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Snapshots().Delete(root.ID) })
	wantKind(t, "Snapshots.Delete of a missing snapshot", err, errdefs.ErrNotFound)
	child.ParentID = 0
	view(t, s, func(tx store.Tx) error {
		all, err := tx.Snapshots().List(web.ID)
		diff(t, "Snapshots.List after delete", []store.Snapshot{child}, all)
		return err
	})
	update(t, s, func(tx store.Tx) error { return tx.Layers().Delete(f.layers[6].ID) })

	update(t, s, func(tx store.Tx) error { return tx.Configs().Delete(web.ID) })
	view(t, s, func(tx store.Tx) error {
		all, err := tx.Snapshots().List(0)
		diff(t, "Snapshots.List after the configuration's delete", []store.Snapshot(nil), all)
		return err
	})
}
