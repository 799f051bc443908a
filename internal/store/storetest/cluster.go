package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Records of many hosts (store/cluster.go).

// clusterCases are the cases of the many-host records.
func clusterCases() []suiteCase {
	return []suiteCase{
		{name: "HostCredentials", fn: testHostCredentials,
			covers: []string{"Hosts.Register", "Hosts.Get", "Hosts.SecretHash"}},
		{name: "HostLayers", fn: testHostLayers,
			covers: []string{"Layers.Update", "Layers.BySHA256", "Layers.Delete",
				"HostLayers.Add", "HostLayers.Remove", "HostLayers.OfHost", "HostLayers.Holders"}},
		{name: "Work", fn: testWork,
			covers: []string{"Work.Enqueue", "Work.Claim", "Work.Finish", "Work.Requeue", "Work.Get", "Work.OfHost", "Work.OfSubject"}},
		{name: "WorkClaimRace", fn: testWorkClaimRace, covers: []string{"Update", "Work.Claim", "Work.Finish"}},
		{name: "FenceVNIs", fn: testFenceVNIs,
			covers: []string{"FenceVNIs.Allocate", "FenceVNIs.OfConfig", "FenceVNIs.Free", "Configs.Delete"}},
		{name: "SpreadVMs", fn: testSpreadVMs, covers: []string{"Configs.Create", "Configs.Get", "Configs.UpdateVM"}},
	}
}

// registerHosts registers hosts of those names.
func registerHosts(t *testing.T, s store.Store, names ...string) []store.Host {
	t.Helper()
	hs := make([]store.Host, len(names))
	update(t, s, func(tx store.Tx) error {
		for i, n := range names {
			hs[i] = store.Host{Name: n, AdvertiseURL: "https://" + n + ":7443"}
			if err := tx.Hosts().Register(&hs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return hs
}

// testHostCredentials: the secret hash, certificate fingerprint and
// underlay round-trip, a restart replaces them, and SecretHash reads the
// hash by name.
func testHostCredentials(t *testing.T, s store.Store) {
	sum := []byte("0123456789abcdef0123456789abcdef")
	a := store.Host{Name: "host-a", AdvertiseURL: "https://10.0.0.1:7443", SecretHash: sum,
		CertFingerprint: "SHA256:ab12", Underlay: "10.9.0.1", StartedAt: someTime, LastSeen: someTime}
	bare := store.Host{Name: "host-b", AdvertiseURL: "https://10.0.0.2:7443", StartedAt: someTime, LastSeen: someTime}
	update(t, s, func(tx store.Tx) error {
		if err := tx.Hosts().Register(&a); err != nil {
			return err
		}
		return tx.Hosts().Register(&bare)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-a")
		if err != nil {
			return err
		}
		diff(t, "Hosts.Get with credentials", &a, got)
		h, err := tx.Hosts().SecretHash("host-a")
		diff(t, "Hosts.SecretHash", sum, h)
		if err != nil {
			return err
		}
		h, err = tx.Hosts().SecretHash("host-b")
		if err != nil || h != nil {
			t.Errorf("SecretHash of a host that registered none: %x, %v; want nil, nil", h, err)
		}
		_, err = tx.Hosts().SecretHash("host-x")
		wantKind(t, "SecretHash of a missing host", err, errdefs.ErrNotFound, "host-x")
		return nil
	})
	// A restart with a new secret and certificate replaces them.
	again := a
	again.SecretHash, again.CertFingerprint, again.Underlay = []byte("fedcba9876543210fedcba9876543210"), "SHA256:cd34", ""
	update(t, s, func(tx store.Tx) error { return tx.Hosts().Register(&again) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Hosts().Get("host-a")
		diff(t, "Hosts.Get after a restart", &again, got)
		return err
	})
}

// testHostLayers: freezing writes a layer's digest and size, BySHA256
// finds frozen layers only, host_layers records holders, and deleting a
// layer deletes its rows.
func testHostLayers(t *testing.T, s store.Store) {
	hs := registerHosts(t, s, "host-a", "host-b")
	var base, top, twin store.Layer
	update(t, s, func(tx store.Tx) error {
		base = store.Layer{Path: "layers/base.qcow2", VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&base); err != nil {
			return err
		}
		base.Frozen, base.SHA256, base.Size = true, "aa11", 4096
		if err := tx.Layers().Update(&base); err != nil {
			return err
		}
		top = store.Layer{Path: "layers/top.qcow2", ParentID: base.ID, VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&top); err != nil {
			return err
		}
		// The same content frozen twice: the oldest answers.
		twin = store.Layer{Path: "layers/twin.qcow2", Frozen: true, SHA256: "aa11", Size: 4096, VirtualSize: 1 << 30}
		return tx.Layers().Create(&twin)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Layers().Get(base.ID)
		if err != nil {
			return err
		}
		diff(t, "Layers.Get after freezing", &base, got)
		got, err = tx.Layers().BySHA256("aa11")
		if err != nil {
			return err
		}
		diff(t, "Layers.BySHA256", &base, got)
		_, err = tx.Layers().BySHA256("bb22")
		wantKind(t, "BySHA256 of a missing digest", err, errdefs.ErrNotFound, "bb22")
		_, err = tx.Layers().BySHA256("")
		wantKind(t, "BySHA256 of no digest", err, errdefs.ErrInvalid)
		return nil
	})
	// A writable layer carrying a digest is not found by it.
	update(t, s, func(tx store.Tx) error {
		top.SHA256 = "cc33"
		return tx.Layers().Update(&top)
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Layers().BySHA256("cc33")
		wantKind(t, "BySHA256 of a writable layer", err, errdefs.ErrNotFound, "cc33")
		return nil
	})

	a, b := hs[0].ID, hs[1].ID
	update(t, s, func(tx store.Tx) error {
		for _, p := range [][2]int64{{a, base.ID}, {a, twin.ID}, {b, base.ID}, {a, base.ID}} {
			if err := tx.HostLayers().Add(p[0], p[1]); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { return tx.HostLayers().Add(a, 9999) })
	wantKind(t, "HostLayers.Add of a missing layer", err, errdefs.ErrConflict, "9999")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.HostLayers().Add(9999, base.ID) })
	wantKind(t, "HostLayers.Add of a missing host", err, errdefs.ErrConflict, "9999")
	view(t, s, func(tx store.Tx) error {
		ids, err := tx.HostLayers().OfHost(a)
		diff(t, "HostLayers.OfHost", []int64{base.ID, twin.ID}, ids)
		if err != nil {
			return err
		}
		holders, err := tx.HostLayers().Holders(base.ID)
		var names []string
		for _, h := range holders {
			names = append(names, h.Name)
		}
		diff(t, "HostLayers.Holders", []string{"host-a", "host-b"}, names)
		return err
	})
	update(t, s, func(tx store.Tx) error {
		if err := tx.HostLayers().Remove(b, base.ID); err != nil {
			return err
		}
		if err := tx.HostLayers().Remove(b, base.ID); err != nil { // again: no change
			return err
		}
		return tx.Layers().Delete(twin.ID)
	})
	view(t, s, func(tx store.Tx) error {
		ids, err := tx.HostLayers().OfHost(a)
		diff(t, "HostLayers.OfHost after deleting a layer", []int64{base.ID}, ids)
		if err != nil {
			return err
		}
		holders, err := tx.HostLayers().Holders(base.ID)
		if len(holders) != 1 || holders[0].Name != "host-a" {
			t.Errorf("Holders after Remove: %v, want host-a alone", holders)
		}
		return err
	})
}

// testWork: items are claimed oldest first per host, finished done or
// failed, requeued when claimed too long ago, and listed.
func testWork(t *testing.T, s store.Store) {
	hs := registerHosts(t, s, "host-a", "host-b")
	a, b := hs[0].ID, hs[1].ID
	items := []store.WorkItem{
		{HostID: a, Kind: "undeploy", Subject: "web", Payload: []byte(`{"save":true}`)},
		{HostID: b, Kind: "undeploy", Subject: "db"},
		{HostID: a, Kind: "delete", Subject: "web"},
		{HostID: a, Kind: "delete", Subject: "old"},
	}
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		for i := range items {
			if err := tx.Work().Enqueue(&items[i]); err != nil {
				return err
			}
		}
		return nil
	})
	for _, w := range items {
		if w.ID == 0 || w.State != store.WorkQueued {
			t.Fatalf("Enqueue: ID %d state %q", w.ID, w.State)
		}
		checkStamped(t, "work CreatedAt", w.CreatedAt, before, time.Now())
	}
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Work().Enqueue(&store.WorkItem{HostID: 9999, Kind: "x"}) })
	wantKind(t, "Enqueue for a missing host", err, errdefs.ErrConflict, "9999")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Work().Enqueue(&store.WorkItem{HostID: a}) })
	wantKind(t, "Enqueue without a kind", err, errdefs.ErrInvalid)

	claim := func(host int64, at time.Time) *store.WorkItem {
		t.Helper()
		var w *store.WorkItem
		update(t, s, func(tx store.Tx) (err error) { w, err = tx.Work().Claim(host, at); return err })
		return w
	}
	t1 := someTime
	first := claim(a, t1)
	want := items[0]
	want.State, want.Attempts, want.ClaimedAt = store.WorkClaimed, 1, t1
	diff(t, "Work.Claim", &want, first)
	second := claim(a, t1.Add(time.Minute))
	if second == nil || second.ID != items[2].ID {
		t.Fatalf("second claim of host-a: %+v, want item %d", second, items[2].ID)
	}

	// host-a's daemon died holding the first two; the restart at t1+30s
	// requeues what was claimed more than 10 s before: the first only.
	var n int64
	update(t, s, func(tx store.Tx) (err error) { n, err = tx.Work().Requeue(a, t1.Add(20*time.Second)); return err })
	if n != 1 {
		t.Errorf("Requeue: %d items, want 1", n)
	}
	again := claim(a, t1.Add(2*time.Minute))
	if again == nil || again.ID != items[0].ID || again.Attempts != 2 {
		t.Fatalf("claim after Requeue: %+v, want item %d with 2 attempts", again, items[0].ID)
	}
	update(t, s, func(tx store.Tx) error {
		if err := tx.Work().Finish(again.ID, ""); err != nil {
			return err
		}
		return tx.Work().Finish(second.ID, "disk gone")
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Work().Finish(again.ID, "") })
	wantKind(t, "Finish of a done item", err, errdefs.ErrConflict, "done")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Work().Finish(items[3].ID, "") })
	wantKind(t, "Finish of a queued item", err, errdefs.ErrConflict, "queued")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Work().Finish(9999, "") })
	wantKind(t, "Finish of a missing item", err, errdefs.ErrNotFound, "9999")

	last := claim(a, t1.Add(3*time.Minute))
	if last == nil || last.ID != items[3].ID {
		t.Fatalf("third claim of host-a: %+v, want item %d", last, items[3].ID)
	}
	if w := claim(a, t1.Add(4*time.Minute)); w != nil {
		t.Errorf("claim of host-a with nothing queued: %+v, want nil", w)
	}
	view(t, s, func(tx store.Tx) error {
		done, err := tx.Work().Get(items[0].ID)
		if err != nil {
			return err
		}
		if done.State != store.WorkDone || done.Error != "" || done.DoneAt.IsZero() || done.Attempts != 2 {
			t.Errorf("a finished item: %+v", done)
		}
		failed, err := tx.Work().Get(items[2].ID)
		if err != nil {
			return err
		}
		if failed.State != store.WorkFailed || failed.Error != "disk gone" {
			t.Errorf("a failed item: %+v", failed)
		}
		_, err = tx.Work().Get(9999)
		wantKind(t, "Work.Get of a missing item", err, errdefs.ErrNotFound, "9999")
		ofA, err := tx.Work().OfHost(a)
		if err != nil {
			return err
		}
		ofB, err := tx.Work().OfHost(b)
		if err != nil {
			return err
		}
		diff(t, "Work.OfHost(b)", []store.WorkItem{items[1]}, ofB)
		if len(ofA) != 3 || ofA[0].ID != items[0].ID || ofA[2].ID != items[3].ID {
			t.Errorf("Work.OfHost(a): %+v", ofA)
		}
		web, err := tx.Work().OfSubject("web")
		if len(web) != 2 || web[0].ID != items[0].ID || web[1].ID != items[2].ID {
			t.Errorf("Work.OfSubject(web): %+v", web)
		}
		diff(t, "a payload", items[0].Payload, web[0].Payload)
		return err
	})
}

// testWorkClaimRace: workers of one host claiming at once each in its own
// transaction take every item exactly once.
func testWorkClaimRace(t *testing.T, s store.Store) {
	hs := registerHosts(t, s, "host-a")
	const items, workers = 50, 4
	update(t, s, func(tx store.Tx) error {
		for i := range items {
			if err := tx.Work().Enqueue(&store.WorkItem{HostID: hs[0].ID, Kind: "k", Subject: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	var (
		mu     sync.Mutex
		taken  = map[int64]int{}
		wg     sync.WaitGroup
		ctx    = context.Background()
		failed = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var w *store.WorkItem
				err := s.Update(ctx, func(tx store.Tx) (err error) {
					if w, err = tx.Work().Claim(hs[0].ID, time.Now()); err != nil || w == nil {
						return err
					}
					return tx.Work().Finish(w.ID, "")
				})
				if err != nil {
					failed <- err
					return
				}
				if w == nil {
					return
				}
				mu.Lock()
				taken[w.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Errorf("claim: %v", err)
	}
	if len(taken) != items {
		t.Errorf("%d items taken, want %d", len(taken), items)
	}
	for id, n := range taken {
		if n != 1 {
			t.Errorf("item %d taken %d times", id, n)
		}
	}
}

// testFenceVNIs: the lowest free VNI, stable per (config, network),
// unique, freed by Free and by deleting the configuration.
func testFenceVNIs(t *testing.T, s store.Store) {
	lan, dmz := createNetwork(t, s, "lan", "10.0.0.0/24"), createNetwork(t, s, "dmz", "10.0.1.0/24")
	cs := []store.Config{{Name: "one", State: store.StateUndeployed}, {Name: "two", State: store.StateUndeployed}, {Name: "three", State: store.StateUndeployed}}
	update(t, s, func(tx store.Tx) error {
		for i := range cs {
			if err := tx.Configs().Create(&cs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	alloc := func(c *store.Config, n *store.Network) int {
		t.Helper()
		var v int
		update(t, s, func(tx store.Tx) (err error) { v, err = tx.FenceVNIs().Allocate(c.ID, n.ID); return err })
		return v
	}
	got := []int{alloc(&cs[0], lan), alloc(&cs[0], dmz), alloc(&cs[1], lan), alloc(&cs[0], lan)}
	diff(t, "VNIs allocated", []int{1, 2, 3, 1}, got)
	view(t, s, func(tx store.Tx) error {
		vs, err := tx.FenceVNIs().OfConfig(cs[0].ID)
		want := []store.FenceVNI{{ConfigID: cs[0].ID, NetworkID: lan.ID, VNI: 1}, {ConfigID: cs[0].ID, NetworkID: dmz.ID, VNI: 2}}
		for i := range vs {
			if i < len(want) {
				want[i].ID = vs[i].ID
			}
		}
		diff(t, "FenceVNIs.OfConfig", want, vs)
		return err
	})
	var n int64
	update(t, s, func(tx store.Tx) (err error) { n, err = tx.FenceVNIs().Free(cs[0].ID); return err })
	if n != 2 {
		t.Errorf("Free: %d, want 2", n)
	}
	// The lowest free is 1 again; then 2.
	diff(t, "VNIs after Free", []int{1, 2}, []int{alloc(&cs[2], lan), alloc(&cs[2], dmz)})
	// Deleting a configuration frees its VNIs.
	update(t, s, func(tx store.Tx) error { return tx.Configs().Delete(cs[1].ID) })
	diff(t, "VNI after deleting its configuration", 3, alloc(&cs[0], lan))
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { _, err := tx.FenceVNIs().Allocate(9999, lan.ID); return err })
	wantKind(t, "Allocate for a missing configuration", err, errdefs.ErrConflict, "9999")
}

// testSpreadVMs: a VM's host round-trips through Create and UpdateVM.
func testSpreadVMs(t *testing.T, s store.Store) {
	c := store.Config{Name: "spread", State: store.StateUndeployed, Host: "host-a", VMs: []store.VM{
		{Name: "a", CPUs: 1, MemoryMiB: 256, State: store.StateUndeployed},
		{Name: "b", CPUs: 1, MemoryMiB: 256, State: store.StateUndeployed, Host: "host-b"},
	}}
	update(t, s, func(tx store.Tx) error { return tx.Configs().Create(&c) })
	update(t, s, func(tx store.Tx) error {
		c.VMs[0].Host = "host-c"
		return tx.Configs().UpdateVM(&c.VMs[0])
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Configs().Get("spread")
		if err != nil {
			return err
		}
		diff(t, "VM hosts", []string{"host-c", "host-b"}, []string{got.VMs[0].Host, got.VMs[1].Host})
		return nil
	})
}
