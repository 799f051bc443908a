package storetest

import (
	"context"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Shortcut layers (issue 15): a frozen layer standing for a run of frozen
// layers, and the children moved onto it.

// shortcutCases are the cases of shortcut layers.
func shortcutCases() []suiteCase {
	return []suiteCase{
		{name: "ShortcutLayers", fn: testShortcutLayers,
			covers: []string{"Layers.Create", "Layers.Get", "Layers.Rebase", "Layers.Children", "Layers.Delete"}},
	}
}

// testShortcutLayers: a shortcut's run (top, bottom, depth) round-trips;
// Rebase moves a child onto the shortcut and nothing else of it; the
// run's top then has no child and can be deleted while the shortcut
// keeps its ids; Rebase of a missing layer or onto a missing parent is
// refused.
func testShortcutLayers(t *testing.T, s store.Store) {
	var base, r1, r2, child, sc store.Layer
	update(t, s, func(tx store.Tx) error {
		base = store.Layer{Path: "layers/sc-base.qcow2", Frozen: true, VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&base); err != nil {
			return err
		}
		r1 = store.Layer{Path: "layers/sc-r1.qcow2", ParentID: base.ID, Frozen: true, VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&r1); err != nil {
			return err
		}
		r2 = store.Layer{Path: "layers/sc-r2.qcow2", ParentID: r1.ID, Frozen: true, VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&r2); err != nil {
			return err
		}
		child = store.Layer{Path: "layers/sc-child.qcow2", ParentID: r2.ID, VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&child); err != nil {
			return err
		}
		sc = store.Layer{Path: "layers/sc-short.qcow2", ParentID: base.ID, Frozen: true, VirtualSize: 1 << 30,
			SHA256: "5c5c", Size: 4096, ShortcutOf: r2.ID, ShortcutBottom: r1.ID, ShortcutLayers: 2}
		return tx.Layers().Create(&sc)
	})
	update(t, s, func(tx store.Tx) error {
		got, err := tx.Layers().Get(sc.ID)
		if err != nil {
			return err
		}
		diff(t, "Layers.Get of a shortcut", &sc, got)
		if err := tx.Layers().Rebase(child.ID, sc.ID); err != nil {
			return err
		}
		child.ParentID = sc.ID
		got, err = tx.Layers().Get(child.ID)
		if err != nil {
			return err
		}
		diff(t, "Layers.Get after Rebase", &child, got)
		kids, err := tx.Layers().Children(r2.ID)
		if err != nil {
			return err
		}
		diff(t, "Layers.Children of the run's top after Rebase", []store.Layer(nil), kids)
		if err := tx.Layers().Delete(r2.ID); err != nil {
			return err
		}
		if err := tx.Layers().Delete(r1.ID); err != nil {
			return err
		}
		got, err = tx.Layers().Get(sc.ID)
		if err != nil {
			return err
		}
		diff(t, "Layers.Get of a shortcut after its run is released", &sc, got)
		return nil
	})
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Rebase(987654, base.ID) })
	wantKind(t, "Layers.Rebase of a missing layer", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Rebase(child.ID, 987654) })
	wantKind(t, "Layers.Rebase onto a missing parent", err, errdefs.ErrConflict)
}
