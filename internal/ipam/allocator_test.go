package ipam_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"stagehand/internal/ipam"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

func openNetwork(t *testing.T, pool string) (store.Store, *store.Network) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n, err := ipam.ParseNetwork("10.20.0.0/16", "", []string{pool}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nw := &store.Network{Name: "lan", Subnet: n.Subnet, Gateway: n.Gateway, Pools: n.Pools}
	if err := db.Update(context.Background(), func(tx store.Tx) error { return tx.Networks().Create(nw) }); err != nil {
		t.Fatal(err)
	}
	return db, nw
}

// TestAllocatorConcurrentNoDuplicates makes 10,000 allocations from 50
// goroutines in real SQLite transactions: all succeed, none twice, and
// they are the lowest 10,000 addresses.
func TestAllocatorConcurrentNoDuplicates(t *testing.T) {
	db, nw := openNetwork(t, "10.20.0.10-10.20.250.250")
	al := ipam.NewAllocator()
	const workers, each = 50, 200
	var mu sync.Mutex
	var got []netip.Addr
	var lat []time.Duration
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				start := time.Now()
				var a *store.Allocation
				err := db.Update(context.Background(), func(tx store.Tx) error {
					var err error
					a, err = al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, a.IP)
				lat = append(lat, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if seen[a] {
			t.Fatalf("%s allocated twice", a)
		}
		seen[a] = true
	}
	if len(got) != workers*each {
		t.Fatalf("%d allocations, want %d", len(got), workers*each)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d allocations from %d goroutines: p50 %v p99 %v", len(got), workers, lat[len(lat)/2], lat[len(lat)*99/100])
}

// TestAllocatorStaleCacheNeverDuplicates allocates an address behind the
// allocator's back: the allocator's pick is refused by the store, it
// reloads and picks another.
func TestAllocatorStaleCacheNeverDuplicates(t *testing.T) {
	db, nw := openNetwork(t, "10.20.0.10-10.20.0.12")
	al := ipam.NewAllocator()
	ctx := context.Background()
	alloc := func() (netip.Addr, error) {
		var a *store.Allocation
		err := db.Update(ctx, func(tx store.Tx) error {
			var err error
			a, err = al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
			return err
		})
		if err != nil {
			return netip.Addr{}, err
		}
		return a.IP, nil
	}
	first, err := alloc()
	if err != nil || first.String() != "10.20.0.10" {
		t.Fatalf("first: %s %v", first, err)
	}
	// Another writer takes .11 directly.
	if err := db.Update(ctx, func(tx store.Tx) error {
		return tx.Allocations().Create(&store.Allocation{NetworkID: nw.ID, IP: netip.MustParseAddr("10.20.0.11"), Kind: store.AllocInternal})
	}); err != nil {
		t.Fatal(err)
	}
	second, err := alloc()
	if err != nil || second.String() != "10.20.0.12" {
		t.Fatalf("second: %s %v, want 10.20.0.12 after a reload", second, err)
	}
	if _, err := alloc(); err == nil {
		t.Fatal("exhausted pool allocated")
	}
	// A release makes the address available again at once.
	al.Released(nw.ID, first)
	if err := db.Update(ctx, func(tx store.Tx) error {
		as, _ := tx.Allocations().List(nw.ID)
		for _, a := range as {
			if a.IP == first {
				return tx.Allocations().Delete(a.ID)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if again, err := alloc(); err != nil || again != first {
		t.Fatalf("after release: %s %v, want %s", again, err, first)
	}
}
