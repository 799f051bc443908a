package cluster

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestMemberAndHosts: a daemon joins (registered, online), heartbeats
// (LastSeen moves), and goes offline in the others' eyes once unseen for
// OfflineAfter; drain reports what is deployed there, remove refuses
// while something is, undrain and remove work on an empty host.
func TestMemberAndHosts(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	m, err := Join(ctx, st, store.Host{Name: "a", AdvertiseURL: "http://10.0.0.1:7080", MemoryMiB: 4096, CPUs: 2}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, st, store.Host{Name: "b", AdvertiseURL: "http://10.0.0.2:7080"}, testLog(t)); err != nil {
		t.Fatal(err)
	}
	hs := NewHosts(st)
	first, err := hs.Get(ctx, "a")
	if err != nil || !first.Online || first.State != store.HostActive || first.MemoryMiB != 4096 {
		t.Fatalf("after Join: %+v %v", first, err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := m.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := hs.Get(ctx, "a")
	if !second.LastSeen.After(first.LastSeen) {
		t.Errorf("heartbeat: LastSeen %v, not after %v", second.LastSeen, first.LastSeen)
	}
	// Seen from OfflineAfter later, without heartbeats, both are offline.
	hs.now = func() time.Time { return time.Now().Add(OfflineAfter + time.Second) }
	all, err := hs.List(ctx)
	if err != nil || len(all) != 2 || all[0].Online || all[1].Online {
		t.Fatalf("List an OfflineAfter later: %+v %v; want a and b offline", all, err)
	}
	hs.now = time.Now

	// A configuration deployed on a, another undeployed there.
	if err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.Configs().Create(&store.Config{Name: "web", State: store.StateDeployed, Host: "a"}); err != nil {
			return err
		}
		return tx.Configs().Create(&store.Config{Name: "old", State: store.StateUndeployed, Host: "a"})
	}); err != nil {
		t.Fatal(err)
	}
	v, err := hs.Drain(ctx, "a", false)
	if err != nil || v.State != store.HostDraining || !slices.Equal(v.Deployed, []string{"web"}) {
		t.Fatalf("Drain: %+v %v; want draining with web deployed", v, err)
	}
	err = hs.Remove(ctx, "a")
	if errdefs.Kind(err) != errdefs.ErrConflict || !strings.Contains(err.Error(), "web") {
		t.Errorf("Remove with web deployed: %v, want a conflict naming web", err)
	}
	if v, err := hs.Undrain(ctx, "a"); err != nil || v.State != store.HostActive {
		t.Errorf("Undrain: %+v %v", v, err)
	}
	if err := hs.Remove(ctx, "b"); err != nil {
		t.Fatalf("Remove of an empty host: %v", err)
	}
	if _, err := hs.Drain(ctx, "b", false); errdefs.Kind(err) != errdefs.ErrConflict {
		t.Errorf("Drain of a removed host: %v, want a conflict", err)
	}
	if _, err := hs.Get(ctx, "zz"); errdefs.Kind(err) != errdefs.ErrNotFound {
		t.Errorf("Get of no host: %v", err)
	}
	// The removed host's daemon starts again: it is back, active.
	if _, err := Join(ctx, st, store.Host{Name: "b", AdvertiseURL: "http://10.0.0.2:7080"}, testLog(t)); err != nil {
		t.Fatal(err)
	}
	if v, _ := hs.Get(ctx, "b"); v.State != store.HostActive {
		t.Errorf("a removed host that joins again: %s", v.State)
	}
}

func TestLocalCapacity(t *testing.T) {
	mem, cpus, err := LocalCapacity()
	if err != nil || mem <= 0 || cpus <= 0 {
		t.Fatalf("LocalCapacity: %d MiB, %d CPUs, %v", mem, cpus, err)
	}
}
