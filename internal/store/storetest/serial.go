package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// What the lab relies on of Update beyond commit and rollback: writers that
// do not interleave, and a transaction that goes on after a refused write.

// raceUpdates starts n Updates at once, the i-th running fn(tx, i), and
// returns their errors.
func raceUpdates(s store.Store, n int, fn func(tx store.Tx, i int) error) []error {
	gate := make(chan struct{})
	results := make(chan error, n)
	for i := range n {
		go func() {
			<-gate
			results <- s.Update(context.Background(), func(tx store.Tx) error { return fn(tx, i) })
		}()
	}
	close(gate)
	errs := make([]error, n)
	for i := range errs {
		errs[i] = <-results
	}
	return errs
}

// testLastFreeAddress: goroutines race for the one free address of a pool,
// the way ipam allocates (read the held addresses, take the lowest free
// one, in one Update). Exactly one wins; the others find the pool full
// (they ran after it, not beside it) rather than failing on the unique
// index or on a busy database. Then the same race without the read: the
// unique index lets exactly one through and refuses the others with
// ErrConflict.
func testLastFreeAddress(t *testing.T, s store.Store) {
	const racers, rounds = 8, 5
	race := func(fn func(tx store.Tx, i int) error) []error { return raceUpdates(s, racers, fn) }
	for round := range rounds {
		ip := mustAddr(fmt.Sprintf("10.9.%d.10", round))
		nw := &store.Network{Name: fmt.Sprintf("tiny-%d", round), Subnet: mustPrefix(fmt.Sprintf("10.9.%d.0/24", round)),
			Pools: []store.IPRange{{First: ip, Last: ip}}}
		update(t, s, func(tx store.Tx) error { return tx.Networks().Create(nw) })

		won, full := 0, 0
		for _, err := range race(func(tx store.Tx, i int) error { return allocateLowest(tx, nw, fmt.Sprintf("racer %d", i)) }) {
			switch {
			case err == nil:
				won++
			case errors.Is(err, errPoolExhausted):
				full++
			default:
				t.Errorf("round %d: allocation of the last free address failed with %v, want success or a full pool", round, err)
			}
		}
		if won != 1 || full != racers-1 {
			t.Errorf("round %d: %d of %d allocations of the last free address succeeded and %d found the pool full; want 1 and %d",
				round, won, racers, full, racers-1)
		}

		blind := mustAddr(fmt.Sprintf("10.9.%d.20", round))
		won = 0
		for _, err := range race(func(tx store.Tx, i int) error {
			return tx.Allocations().Create(&store.Allocation{NetworkID: nw.ID, IP: blind, Kind: store.AllocExternal, Holder: fmt.Sprintf("racer %d", i)})
		}) {
			switch {
			case err == nil:
				won++
			case errors.Is(err, errdefs.ErrConflict):
			default:
				t.Errorf("round %d: a racing CreateAllocation of %s failed with %v, want ErrConflict", round, blind, err)
			}
		}
		if won != 1 {
			t.Errorf("round %d: %d racing CreateAllocation of %s succeeded, want 1", round, won, blind)
		}
		view(t, s, func(tx store.Tx) error {
			as, err := tx.Allocations().List(nw.ID)
			if err != nil {
				return err
			}
			var got []netip.Addr
			for _, a := range as {
				got = append(got, a.IP)
			}
			diff(t, fmt.Sprintf("round %d: addresses held", round), []netip.Addr{ip, blind}, got)
			return nil
		})
	}
}

// testRefusedWriteKeepsTx: a write the store refuses (a taken address or
// name, a missing parent, a record still in use, an invalid lease) fails
// alone; the transaction goes on and commits what fn did after it. The
// ipam allocator relies on it: a refused address is retried in the same
// transaction.
func testRefusedWriteKeepsTx(t *testing.T, s store.Store) {
	lan := createNetwork(t, s, "lan", "10.0.0.0/24")
	held := store.Allocation{NetworkID: lan.ID, IP: mustAddr("10.0.0.10"), Kind: store.AllocInternal}
	update(t, s, func(tx store.Tx) error { return tx.Allocations().Create(&held) })

	var next store.Allocation
	update(t, s, func(tx store.Tx) error {
		err := tx.Allocations().Create(&store.Allocation{NetworkID: lan.ID, IP: held.IP, Kind: store.AllocInternal})
		wantKind(t, "CreateAllocation of a held address", err, errdefs.ErrConflict, "10.0.0.10")
		err = tx.Networks().Create(&store.Network{Name: "lan"})
		wantKind(t, "CreateNetwork with a taken name", err, errdefs.ErrConflict, "lan")
		err = tx.Layers().Create(&store.Layer{Path: "layers/orphan.qcow2", ParentID: 987654})
		wantKind(t, "CreateLayer with a missing parent", err, errdefs.ErrConflict)
		err = tx.Networks().Delete(lan.ID)
		wantKind(t, "DeleteNetwork with held addresses", err, errdefs.ErrConflict, "lan")
		err = tx.Leases().Put(&store.Lease{})
		wantKind(t, "PutLease of nothing", err, errdefs.ErrInvalid)
		_, err = tx.Templates().Get("nope")
		wantKind(t, "GetTemplate of a missing name", err, errdefs.ErrNotFound, "nope")

		// The retry of the allocator, and more writes after it.
		next = store.Allocation{NetworkID: lan.ID, IP: mustAddr("10.0.0.11"), Kind: store.AllocInternal}
		if err := tx.Allocations().Create(&next); err != nil {
			return fmt.Errorf("CreateAllocation after refused writes: %w", err)
		}
		if err := tx.Networks().Create(&store.Network{Name: "after"}); err != nil {
			return fmt.Errorf("CreateNetwork after refused writes: %w", err)
		}
		return tx.Events().Add(&store.Event{Actor: "test", Action: "create", Object: "network", Subject: "after", Result: "ok"})
	})
	view(t, s, func(tx store.Tx) error {
		as, err := tx.Allocations().List(lan.ID)
		if err != nil {
			return err
		}
		diff(t, "allocations committed after refused writes", []store.Allocation{held, next}, as)
		if _, err := tx.Networks().Get("after"); err != nil {
			t.Errorf("network created after refused writes: %v", err)
		}
		ls, err := tx.Layers().List()
		if err != nil {
			return err
		}
		diff(t, "layers left by a refused CreateLayer", []store.Layer(nil), ls)
		es, err := tx.Events().List(0, 0)
		if err != nil {
			return err
		}
		if len(es) != 1 {
			t.Errorf("events after refused writes: %+v, want the one added", es)
		}
		return nil
	})
}

// errOverQuota is testQuotaRace's refusal.
var errOverQuota = errors.New("over quota")

// testQuotaRace: goroutines race to create a configuration each while the
// owner's stored VMs are under a limit, reading QuotaUse and then writing,
// the way the lab enforces quotas. No unique index stands between them, so
// only serialised writers keep the count at the limit (a snapshot that
// does not see the others' writes lets them all through).
func testQuotaRace(t *testing.T, s store.Store) {
	const racers, limit, rounds = 8, 3, 3
	for round := range rounds {
		var owner *store.User
		update(t, s, func(tx store.Tx) error {
			owner = mustUser(t, tx, fmt.Sprintf("owner-%d", round))
			return nil
		})
		created, refused := 0, 0
		for _, err := range raceUpdates(s, racers, func(tx store.Tx, i int) error {
			use, err := tx.Quotas().Use(store.QuotaScopeUser, owner.ID)
			if err != nil {
				return err
			}
			if use.StoredVMs+1 > limit {
				return errOverQuota
			}
			return tx.Configs().Create(&store.Config{Name: fmt.Sprintf("c-%d-%d", round, i), State: store.StateUndeployed, OwnerID: owner.ID,
				VMs: []store.VM{{Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed}}})
		}) {
			switch {
			case err == nil:
				created++
			case errors.Is(err, errOverQuota):
				refused++
			default:
				t.Errorf("round %d: a create under quota failed with %v, want success or the quota's refusal", round, err)
			}
		}
		view(t, s, func(tx store.Tx) error {
			use, err := tx.Quotas().Use(store.QuotaScopeUser, owner.ID)
			if err != nil {
				return err
			}
			if created != limit || refused != racers-limit || use.StoredVMs != limit {
				t.Errorf("round %d: %d racing creates under a limit of %d stored VMs succeeded, %d were refused, %d VMs stored; want %d, %d, %d",
					round, created, limit, refused, use.StoredVMs, limit, racers-limit, limit)
			}
			return nil
		})
	}
}
