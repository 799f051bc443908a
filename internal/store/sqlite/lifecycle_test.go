package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

func TestLibraryArchivesLeasesEvents(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	update := func(fn func(tx store.Tx) error) {
		t.Helper()
		if err := db.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}

	// Kinds: "" is stored as config, library round-trips.
	var ws, lib store.Config
	update(func(tx store.Tx) error {
		ws = store.Config{Name: "ws", State: store.StateUndeployed}
		lib = store.Config{Name: "lib", State: store.StateUndeployed, Kind: store.KindLibrary}
		if err := tx.Configs().Create(&ws); err != nil {
			return err
		}
		return tx.Configs().Create(&lib)
	})
	update(func(tx store.Tx) error {
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		if len(cs) != 2 || cs[0].Kind != store.KindConfig || cs[1].Kind != store.KindLibrary {
			t.Errorf("kinds: %+v", cs)
		}
		return nil
	})

	// Archives.
	a := store.Archive{Name: "arch", Source: "ws", Dir: "a-1", Manifest: []byte(`{"v":1}`), Size: 42}
	update(func(tx store.Tx) error { return tx.Archives().Create(&a) })
	err = db.Update(ctx, func(tx store.Tx) error {
		return tx.Archives().Create(&store.Archive{Name: "arch", Dir: "a-2", Manifest: []byte("{}")})
	})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("duplicate archive: %v, want conflict", err)
	}
	update(func(tx store.Tx) error {
		got, err := tx.Archives().Get("arch")
		if err != nil {
			return err
		}
		if got.ID != a.ID || string(got.Manifest) != `{"v":1}` || got.Size != 42 || got.Dir != "a-1" || !got.CreatedAt.Equal(a.CreatedAt) {
			t.Errorf("archive: %+v, want %+v", got, a)
		}
		if _, err := tx.Archives().Get("nope"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("missing archive: %v", err)
		}
		return nil
	})

	// Leases: put replaces, one per object, cascades on delete.
	now := time.Unix(1_800_000_000, 0).UTC()
	l := store.Lease{ConfigID: ws.ID, StorageExpires: now, DeployLease: 8 * time.Hour, UndeployAction: store.UndeploySave}
	update(func(tx store.Tx) error { return tx.Leases().Put(&l) })
	l2 := store.Lease{ConfigID: ws.ID, StorageExpires: now.Add(time.Hour), ExpiredAt: now, UndeployAction: store.UndeployDiscard, LastUsed: now}
	update(func(tx store.Tx) error { return tx.Leases().Put(&l2) })
	update(func(tx store.Tx) error { return tx.Leases().Put(&store.Lease{ArchiveID: a.ID, StorageExpires: now}) })
	update(func(tx store.Tx) error {
		got, err := tx.Leases().OfConfig(ws.ID)
		if err != nil {
			return err
		}
		if got.ID != l.ID || !got.StorageExpires.Equal(now.Add(time.Hour)) || !got.ExpiredAt.Equal(now) ||
			got.DeployLease != 0 || !got.DeployExpires.IsZero() || got.UndeployAction != store.UndeployDiscard || !got.LastUsed.Equal(now) {
			t.Errorf("lease after replace: %+v", got)
		}
		if _, err := tx.Leases().OfConfig(lib.ID); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("no lease: %v", err)
		}
		ls, err := tx.Leases().List()
		if len(ls) != 2 {
			t.Errorf("leases: %+v", ls)
		}
		return err
	})
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.Leases().Put(&store.Lease{}) }); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("lease of nothing: %v", err)
	}
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.Leases().Put(&store.Lease{ConfigID: 999}) }); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("lease of a missing configuration: %v", err)
	}
	update(func(tx store.Tx) error {
		if err := tx.Configs().Delete(ws.ID); err != nil {
			return err
		}
		return tx.Archives().Delete(a.ID)
	})
	update(func(tx store.Tx) error {
		ls, err := tx.Leases().List()
		if len(ls) != 0 {
			t.Errorf("leases left after their objects were deleted: %+v", ls)
		}
		return err
	})

	// Events: increasing ids, after/limit, pruning by time.
	for i, at := range []time.Time{now.Add(-48 * time.Hour), now, now.Add(time.Minute)} {
		e := store.Event{At: at, Actor: "me", Action: "create", Object: "config", Subject: "x", Result: "ok", Detail: string(rune('a' + i))}
		update(func(tx store.Tx) error { return tx.Events().Add(&e) })
	}
	update(func(tx store.Tx) error {
		all, err := tx.Events().List(0, 0)
		if err != nil {
			return err
		}
		if len(all) != 3 || all[0].ID >= all[1].ID || all[2].Detail != "c" || !all[1].At.Equal(now) {
			t.Fatalf("events: %+v", all)
		}
		some, err := tx.Events().List(all[0].ID, 1)
		if err != nil {
			return err
		}
		if len(some) != 1 || some[0].ID != all[1].ID {
			t.Errorf("after %d limit 1: %+v", all[0].ID, some)
		}
		n, err := tx.Events().DeleteBefore(now.Add(-time.Hour))
		if n != 1 {
			t.Errorf("pruned %d events, want 1", n)
		}
		return err
	})
}
