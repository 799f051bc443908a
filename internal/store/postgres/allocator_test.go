package postgres

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/ipam"
	"stagehand/internal/store"
)

// daemon is what one daemon allocates with: its own connection pool and
// its own ipam.Allocator, over the database the daemons share.
type daemon struct {
	s  *Store
	al *ipam.Allocator
}

// allocate takes n addresses of nw in one Update, as a linked clone of n
// VMs does.
func (d daemon) allocate(ctx context.Context, nw *store.Network, n int) ([]netip.Addr, error) {
	var got []netip.Addr
	err := d.s.Update(ctx, func(tx store.Tx) error {
		got = got[:0]
		for range n {
			a, err := d.al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
			if err != nil {
				return err
			}
			got = append(got, a.IP)
		}
		return nil
	})
	if err != nil {
		d.al.Forget() // what the lab does when an Update fails
	}
	return got, err
}

// lastOf is the last address of the n addresses from first.
func lastOf(first netip.Addr, n int) netip.Addr {
	for range n - 1 {
		first = first.Next()
	}
	return first
}

// TestAllocatorsOfTwoDaemons: two daemons (two stores, two allocators) on
// one database allocate from one pool at once, three addresses per
// transaction. Every address of the pool is handed out exactly once,
// nobody is told the pool is full while it is not, and no transaction
// waits for a lock the other daemon's process holds (a wait PostgreSQL
// cannot see ends only at lock_timeout, 10 s). Then one daemon frees
// addresses behind the other's back, and an allocation rolls back: the
// other daemon still finds every free address, and only then is told the
// pool is full.
func TestAllocatorsOfTwoDaemons(t *testing.T) {
	dsn := server.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ds [2]daemon
	for i := range ds {
		s, err := Open(ctx, dsn, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ds[i] = daemon{s: s, al: ipam.NewAllocator()}
	}
	const (
		poolSize = 960
		perTx    = 3
		workers  = 8 // per daemon
	)
	nw := &store.Network{Name: "lan", Subnet: netip.MustParsePrefix("10.30.0.0/16"), Gateway: netip.MustParseAddr("10.30.0.1"),
		Pools: []store.IPRange{{First: netip.MustParseAddr("10.30.0.10"), Last: lastOf(netip.MustParseAddr("10.30.0.10"), poolSize)}}}
	if err := ds[0].s.Update(ctx, func(tx store.Tx) error { return tx.Networks().Create(nw) }); err != nil {
		t.Fatal(err)
	}

	// Phase 1: 2 daemons × 4 workers × 10 transactions × 3 addresses =
	// the whole pool.
	var (
		mu      sync.Mutex
		got     []netip.Addr
		slowest time.Duration
		wg      sync.WaitGroup
		start   = time.Now()
	)
	for _, d := range ds {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range poolSize / perTx / workers / len(ds) {
					start := time.Now()
					ips, err := d.allocate(ctx, nw, perTx)
					took := time.Since(start)
					if err != nil {
						t.Errorf("allocate %d addresses (after %v): %v", perTx, took, err)
						return
					}
					mu.Lock()
					got = append(got, ips...)
					slowest = max(slowest, took)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if seen[a] {
			t.Errorf("%s handed out twice", a)
		}
		seen[a] = true
	}
	if len(seen) != poolSize {
		t.Fatalf("%d addresses handed out, want the whole pool (%d)", len(seen), poolSize)
	}
	if slowest > 5*time.Second {
		t.Errorf("slowest transaction took %v: a writer waited for a lock another held while waiting on it", slowest)
	}
	t.Logf("%d addresses in %d-address transactions by 2 daemons × %d workers: %v (%.0f/s), slowest transaction %v, retries %d+%d",
		len(got), perTx, workers, took, float64(len(got))/took.Seconds(), slowest, ds[0].s.Retries(), ds[1].s.Retries())

	// Phase 2: daemon 1 frees 5 addresses; daemon 0 (whose cache saw the
	// pool full) takes exactly those, then is told the pool is full.
	all := slices.Clone(got)
	slices.SortFunc(all, netip.Addr.Compare)
	freed := all[100:105]
	if err := ds[1].s.Update(ctx, func(tx store.Tx) error {
		as, err := tx.Allocations().List(nw.ID)
		if err != nil {
			return err
		}
		for _, a := range as {
			if slices.Contains(freed, a.IP) {
				if err := tx.Allocations().Delete(a.ID); err != nil {
					return err
				}
				ds[1].al.Released(nw.ID, a.IP)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A transaction of daemon 0 that allocates and rolls back gives
	// nothing away.
	errNo := errors.New("changed my mind")
	err := ds[0].s.Update(ctx, func(tx store.Tx) error {
		if _, err := ds[0].al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{}); err != nil {
			return err
		}
		return errNo
	})
	if !errors.Is(err, errNo) {
		t.Fatalf("rolled back allocation: %v", err)
	}
	var again []netip.Addr
	for range len(freed) {
		ips, err := ds[0].allocate(ctx, nw, 1)
		if err != nil {
			t.Fatalf("allocate after %v were freed by the other daemon (got %v so far): %v", freed, again, err)
		}
		again = append(again, ips...)
	}
	slices.SortFunc(again, netip.Addr.Compare)
	if !slices.Equal(again, freed) {
		t.Errorf("daemon 0 took %v, want the freed %v", again, freed)
	}
	if ips, err := ds[0].allocate(ctx, nw, 1); errdefs.Kind(err) != errdefs.ErrConflict {
		t.Errorf("allocate from a full pool: %v %v, want a conflict (pool exhausted)", ips, err)
	}
}

// TestAllocatorHoldsNoLockAcrossStoreCalls: a transaction of a daemon
// waiting in PostgreSQL for an address another transaction of the same
// daemon inserted (but has not committed) must not keep that other
// transaction from allocating again: no lock of the process is held
// across a store call. Daemon 1 takes addresses behind daemon 0's back
// so that daemon 0's cache goes stale while its transaction A holds an
// uncommitted address.
func TestAllocatorHoldsNoLockAcrossStoreCalls(t *testing.T) {
	dsn := server.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ds [2]daemon
	for i := range ds {
		s, err := Open(ctx, dsn, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ds[i] = daemon{s: s, al: ipam.NewAllocator()}
	}
	nw := &store.Network{Name: "lan", Subnet: netip.MustParsePrefix("10.30.0.0/24"), Gateway: netip.MustParseAddr("10.30.0.1"),
		Pools: []store.IPRange{{First: netip.MustParseAddr("10.30.0.10"), Last: netip.MustParseAddr("10.30.0.40")}}}
	if err := ds[0].s.Update(ctx, func(tx store.Tx) error { return tx.Networks().Create(nw) }); err != nil {
		t.Fatal(err)
	}
	take := func(ip string) { // daemon 1, behind daemon 0's back
		t.Helper()
		if err := ds[1].s.Update(ctx, func(tx store.Tx) error {
			return tx.Allocations().Create(&store.Allocation{NetworkID: nw.ID, IP: netip.MustParseAddr(ip), Kind: store.AllocInternal})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ds[0].allocate(ctx, nw, 1); err != nil { // 10.30.0.10; the cache is loaded
		t.Fatal(err)
	}
	take("10.30.0.11")

	// Transaction A takes one address, waits, then takes another.
	aHolds, aGoOn := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	var secondTook time.Duration
	go func() {
		first := true
		aDone <- ds[0].s.Update(ctx, func(tx store.Tx) error {
			if _, err := ds[0].al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{}); err != nil {
				return err
			}
			if first {
				first = false
				close(aHolds)
				<-aGoOn
			}
			start := time.Now()
			_, err := ds[0].al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
			secondTook = max(secondTook, time.Since(start)) // the longest of its runs
			return err
		})
	}()
	<-aHolds
	take("10.30.0.13")
	take("10.30.0.14")
	// Transaction B of the same daemon allocates while A is open.
	bDone := make(chan error, 1)
	go func() {
		_, err := ds[0].allocate(ctx, nw, 1)
		bDone <- err
	}()
	// Let B either finish or wait in PostgreSQL for A.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var waiting int
		if err := ds[1].s.pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 || len(bDone) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(aGoOn)
	if err := <-aDone; err != nil {
		t.Fatalf("transaction A: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("transaction B: %v", err)
	}
	if secondTook > 2*time.Second {
		t.Errorf("A's second allocation took %v: it waited for B, which waited in PostgreSQL for A", secondTook)
	}
	t.Logf("A's second allocation took %v", secondTook)
}
