package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// testHosts: a host registers (every field round-trips), heartbeats,
// changes state; registering again (a restart) updates it in place,
// keeps a draining host draining and brings a removed one back; daemons
// registering one name at once make one host.
func testHosts(t *testing.T, s store.Store) {
	started := someTime
	a := store.Host{Name: "host-a", AdvertiseURL: "http://10.0.0.1:7080", MemoryMiB: 65536, CPUs: 16,
		StartedAt: started, LastSeen: started.Add(time.Second)}
	before := time.Now()
	update(t, s, func(tx store.Tx) error { return tx.Hosts().Register(&a) })
	if a.ID == 0 || a.State != store.HostActive {
		t.Fatalf("RegisterHost: ID %d, state %q; want an ID and %q", a.ID, a.State, store.HostActive)
	}
	checkStamped(t, "CreatedAt", a.CreatedAt, before, time.Now())
	b := store.Host{Name: "host-b", AdvertiseURL: "http://10.0.0.2:7080", MemoryMiB: 8192, CPUs: 4}
	update(t, s, func(tx store.Tx) error { return tx.Hosts().Register(&b) })
	checkStamped(t, "zero StartedAt", b.StartedAt, before, time.Now())
	checkStamped(t, "zero LastSeen", b.LastSeen, before, time.Now())

	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-a")
		if err != nil {
			return err
		}
		diff(t, "Hosts.Get", &a, got)
		all, err := tx.Hosts().List()
		if err != nil {
			return err
		}
		diff(t, "Hosts.List", []store.Host{a, b}, all)
		_, err = tx.Hosts().Get("host-x")
		wantKind(t, "GetHost of a missing name", err, errdefs.ErrNotFound, "host-x")
		return nil
	})
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Hosts().Register(&store.Host{AdvertiseURL: "http://x"}) })
	wantKind(t, "RegisterHost without a name", err, errdefs.ErrInvalid)

	// Heartbeat.
	seen := someTime.Add(time.Hour)
	update(t, s, func(tx store.Tx) error { return tx.Hosts().Touch("host-a", seen) })
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Hosts().Touch("host-x", seen) })
	wantKind(t, "TouchHost of a missing name", err, errdefs.ErrNotFound, "host-x")
	a.LastSeen = seen
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-a")
		diff(t, "GetHost after TouchHost", &a, got)
		return err
	})

	// State.
	update(t, s, func(tx store.Tx) error { return tx.Hosts().SetState("host-a", store.HostDraining) })
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Hosts().SetState("host-a", "asleep") })
	wantKind(t, "SetHostState to no state", err, errdefs.ErrInvalid, "asleep")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Hosts().SetState("host-x", store.HostActive) })
	wantKind(t, "SetHostState of a missing name", err, errdefs.ErrNotFound, "host-x")

	// A restart updates the host in place; draining stays draining.
	again := store.Host{Name: "host-a", AdvertiseURL: "http://10.0.0.9:7080", MemoryMiB: 32768, CPUs: 8,
		StartedAt: someTime.Add(2 * time.Hour), LastSeen: someTime.Add(2 * time.Hour)}
	update(t, s, func(tx store.Tx) error { return tx.Hosts().Register(&again) })
	want := again
	want.ID, want.State, want.CreatedAt = a.ID, store.HostDraining, a.CreatedAt
	diff(t, "RegisterHost of a draining host", &want, &again)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-a")
		diff(t, "GetHost after a second RegisterHost", &want, got)
		return err
	})
	// A removed host that registers again is active.
	update(t, s, func(tx store.Tx) error { return tx.Hosts().SetState("host-b", store.HostRemoved) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-b")
		if err == nil && got.State != store.HostRemoved {
			t.Errorf("after SetHostState removed: state %q", got.State)
		}
		return err
	})
	update(t, s, func(tx store.Tx) error {
		return tx.Hosts().Register(&store.Host{Name: "host-b", AdvertiseURL: b.AdvertiseURL})
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-b")
		if err == nil && (got.State != store.HostActive || got.ID != b.ID) {
			t.Errorf("a removed host registered again: state %q id %d, want %q id %d", got.State, got.ID, store.HostActive, b.ID)
		}
		return err
	})

	// Daemons registering one name at once make one host.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Update(ctx, func(tx store.Tx) error {
				return tx.Hosts().Register(&store.Host{Name: "host-c", AdvertiseURL: "http://10.0.0.3:7080"})
			}); err != nil {
				t.Errorf("concurrent RegisterHost: %v", err)
			}
		}()
	}
	wg.Wait()
	view(t, s, func(tx store.Tx) error {
		all, err := tx.Hosts().List()
		var names []string
		for _, h := range all {
			names = append(names, h.Name)
		}
		diff(t, "hosts after concurrent registrations", []string{"host-a", "host-b", "host-c"}, names)
		return err
	})
}
