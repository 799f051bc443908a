package ipam

import (
	"fmt"
	"net/netip"
	"sync"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Allocator hands out pool addresses without reading every held address of
// the network at each allocation. It keeps, per network, a hint: the
// addresses not worth trying (held when the hint was loaded from the
// store, or picked since) and the lowest address that may be free.
//
// The store is the truth, not the hint: its unique index refuses a second
// allocation of an address, and a refused pick is marked and the next
// address tried. So the hint may be stale in both directions and still
// never hands out an address twice: other daemons allocating from the
// same database (it says free, the store refuses), a transaction that
// picked and then rolled back, or one that PostgreSQL runs again (it says
// held, the address is free). Before saying a pool is exhausted the
// allocator reloads the hint from the transaction, so stale entries can
// waste an address for a while but never make a pool look full.
//
// The mutex guards the hint only and is never held across a store call: a
// transaction waiting in PostgreSQL for an address another transaction of
// this process inserted must not keep that transaction from allocating
// (a wait the database's deadlock detector cannot see).
type Allocator struct {
	mu    sync.Mutex
	hints map[int64]*hint
}

// hint is one network's cached view.
type hint struct {
	held   map[netip.Addr]bool
	lowest netip.Addr // no free address below it, as far as the hint knows; zero: unknown
}

// maxTakenInARow bounds the picks one Allocate tries that the store
// refuses before it reloads the hint from the store (and again, before it
// gives up): a hint that fell far behind another daemon is cheaper to
// reload than to walk, and a refusal that is not about the address (the
// network is gone) must not walk the whole pool.
const maxTakenInARow = 32

// NewAllocator returns an empty allocator.
func NewAllocator() *Allocator {
	return &Allocator{hints: map[int64]*hint{}}
}

// Allocate takes a free pool address of nw for kind and holder inside tx:
// the lowest free one, or with a valid after, the next free one after it in
// rotation (see PickFreeAfter). It must run in a store.Update.
func (al *Allocator) Allocate(tx store.Tx, nw *store.Network, kind, holder string, after netip.Addr) (*store.Allocation, error) {
	reloaded := false
	taken := 0 // refused picks since the last (re)load
	for {
		ip, loaded, err := al.pick(nw, after)
		switch {
		case !loaded || (err != nil && !reloaded) || taken == maxTakenInARow && !reloaded:
			// No hint yet, or it says the pool is full, or it is far
			// behind: read what the store holds, in this transaction.
			if err := al.reload(tx, nw.ID); err != nil {
				return nil, err
			}
			reloaded, taken = true, 0
			continue
		case err != nil:
			return nil, err // exhausted, also by the store's own account
		}
		a := &store.Allocation{NetworkID: nw.ID, IP: ip, Kind: kind, Holder: holder}
		err = tx.Allocations().Create(a)
		if err == nil {
			return a, nil
		}
		if errdefs.Kind(err) != errdefs.ErrConflict || taken == maxTakenInARow {
			if errdefs.Kind(err) != errdefs.ErrConflict {
				al.unpick(nw.ID, ip) // not inserted: it is as free as before
			}
			return nil, fmt.Errorf("allocate %s on network %q: %w", ip, nw.Name, err)
		}
		// Held in the store (or being inserted by a transaction in
		// flight): the pick left it marked held. The first refusal says
		// another writer has been allocating: learn what it holds.
		if taken == 0 {
			if err := al.learn(tx, nw.ID); err != nil {
				return nil, err
			}
		}
		taken++
	}
}

// pick chooses an address from nw's hint and marks it held, so that
// concurrent transactions of this process try others. loaded is false
// when there is no hint for nw yet.
func (al *Allocator) pick(nw *store.Network, after netip.Addr) (ip netip.Addr, loaded bool, err error) {
	al.mu.Lock()
	defer al.mu.Unlock()
	h, ok := al.hints[nw.ID]
	if !ok {
		return ip, false, nil
	}
	start := after
	if !start.IsValid() && h.lowest.IsValid() {
		start = h.lowest.Prev()
	}
	ip, err = PickFreeAfter(nw, h.held, start)
	if err != nil {
		return ip, true, err
	}
	h.held[ip] = true
	if !after.IsValid() {
		h.lowest = ip.Next()
	}
	return ip, true, nil
}

// unpick undoes a pick whose insert did not happen.
func (al *Allocator) unpick(networkID int64, ip netip.Addr) {
	al.Released(networkID, ip)
}

// reload replaces the hint of a network by what tx sees held. The store is
// read without the mutex; picks other transactions of this process made in
// the meantime drop out of the hint, which costs them at most a refused
// insert.
func (al *Allocator) reload(tx store.Tx, networkID int64) error {
	allocs, err := tx.Allocations().List(networkID)
	if err != nil {
		return err
	}
	held := make(map[netip.Addr]bool, len(allocs))
	for _, a := range allocs {
		held[a.IP] = true
	}
	al.mu.Lock()
	defer al.mu.Unlock()
	al.hints[networkID] = &hint{held: held}
	return nil
}

// learn adds to the hint of a network what tx sees held, keeping the
// picks of this process (some in transactions still in flight).
func (al *Allocator) learn(tx store.Tx, networkID int64) error {
	allocs, err := tx.Allocations().List(networkID)
	if err != nil {
		return err
	}
	al.mu.Lock()
	defer al.mu.Unlock()
	h, ok := al.hints[networkID]
	if !ok {
		return nil
	}
	for _, a := range allocs {
		h.held[a.IP] = true
	}
	return nil
}

// Released tells the allocator that ip of a network is free again (its
// allocation was deleted in a transaction that is about to commit).
func (al *Allocator) Released(networkID int64, ip netip.Addr) {
	al.mu.Lock()
	defer al.mu.Unlock()
	h, ok := al.hints[networkID]
	if !ok {
		return
	}
	delete(h.held, ip)
	if h.lowest.IsValid() && ip.Less(h.lowest) {
		h.lowest = ip
	}
}

// Forget drops every hint; call it when a transaction that allocated or
// released addresses did not commit, so that the next allocation starts
// from what the store holds.
func (al *Allocator) Forget() {
	al.mu.Lock()
	defer al.mu.Unlock()
	al.hints = map[int64]*hint{}
}
