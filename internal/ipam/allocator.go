package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Allocator hands out pool addresses without reading every held address of
// the network at each allocation: it keeps each network's held set in
// memory, loaded from the store the first time, and the lowest address that
// may be free. The store stays the arbiter: its unique index refuses a
// second allocation of an address, and a refused pick reloads the set from
// the store and tries again, so a stale cache can cost a retry but never a
// duplicate. Allocate must run inside a store.Update; the store serialises
// writers, so the mutex here is never waited on while a writer waits.
type Allocator struct {
	mu     sync.Mutex
	held   map[int64]map[netip.Addr]bool
	lowest map[int64]netip.Addr // no free address below it (lowest-first picks)
}

// NewAllocator returns an empty allocator.
func NewAllocator() *Allocator {
	return &Allocator{held: map[int64]map[netip.Addr]bool{}, lowest: map[int64]netip.Addr{}}
}

// Allocate takes a free pool address of nw for kind and holder inside tx:
// the lowest free one, or with a valid after, the next free one after it in
// rotation (see PickFreeAfter).
func (al *Allocator) Allocate(tx store.Tx, nw *store.Network, kind, holder string, after netip.Addr) (*store.Allocation, error) {
	al.mu.Lock()
	defer al.mu.Unlock()
	held, ok := al.held[nw.ID]
	if !ok {
		var err error
		if held, err = al.load(tx, nw.ID); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		start := after
		if !start.IsValid() {
			if low, ok := al.lowest[nw.ID]; ok {
				start = low.Prev()
			}
		}
		ip, err := PickFreeAfter(nw, held, start)
		if err != nil {
			return nil, err
		}
		a := &store.Allocation{NetworkID: nw.ID, IP: ip, Kind: kind, Holder: holder}
		err = tx.CreateAllocation(a)
		if err == nil {
			held[ip] = true
			if !after.IsValid() {
				al.lowest[nw.ID] = ip.Next()
			}
			return a, nil
		}
		if !errors.Is(err, errdefs.ErrConflict) || attempt > 0 {
			return nil, fmt.Errorf("allocate %s on network %q: %w", ip, nw.Name, err)
		}
		// Someone else holds it: the cache was stale. Reload and retry.
		if held, err = al.load(tx, nw.ID); err != nil {
			return nil, err
		}
	}
}

func (al *Allocator) load(tx store.Tx, networkID int64) (map[netip.Addr]bool, error) {
	allocs, err := tx.ListAllocations(networkID)
	if err != nil {
		return nil, err
	}
	held := make(map[netip.Addr]bool, len(allocs))
	for _, a := range allocs {
		held[a.IP] = true
	}
	al.held[networkID] = held
	delete(al.lowest, networkID)
	return held, nil
}

// Released tells the allocator that ip of a network is free again (its
// allocation was deleted in a transaction that is about to commit).
func (al *Allocator) Released(networkID int64, ip netip.Addr) {
	al.mu.Lock()
	defer al.mu.Unlock()
	if held, ok := al.held[networkID]; ok {
		delete(held, ip)
	}
	if low, ok := al.lowest[networkID]; ok && ip.Less(low) {
		al.lowest[networkID] = ip
	}
}

// Forget drops every cached set; call it when a transaction that
// allocated or released addresses did not commit.
func (al *Allocator) Forget() {
	al.mu.Lock()
	defer al.mu.Unlock()
	al.held = map[int64]map[netip.Addr]bool{}
	al.lowest = map[int64]netip.Addr{}
}
