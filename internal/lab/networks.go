package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/ipam"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// CreateNetwork records a network and its pool.
func (s Networks) Create(ctx context.Context, spec NetworkSpec) (*NetworkView, error) {
	if err := CheckName("network", spec.Name); err != nil {
		return nil, err
	}
	n, err := ipam.ParseNetwork(spec.Subnet, spec.Gateway, spec.Pools, spec.DNS)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", spec.Name, err)
	}
	var view *NetworkView
	err = s.update(ctx, func(tx store.Tx) error {
		place, err := s.access.Place(ctx, tx, auth.NetworkCreate, access.KindNetwork, spec.Workspace, 0)
		if err != nil {
			return fmt.Errorf("network %q: %w", spec.Name, err)
		}
		// Two networks sharing addresses would put the same route on two
		// bridges and hand one address to two VMs.
		others, err := tx.Networks().List()
		if err != nil {
			return err
		}
		for _, o := range others {
			if o.Name != spec.Name && o.Subnet.Overlaps(n.Subnet) {
				return errdefs.Conflict("network %q: subnet %s overlaps subnet %s of network %q", spec.Name, n.Subnet, o.Subnet, o.Name)
			}
		}
		nw := &store.Network{Name: spec.Name, Subnet: n.Subnet, Gateway: n.Gateway, DNS: n.DNS, Pools: n.Pools,
			WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID}
		if err := tx.Networks().Create(nw); err != nil {
			if errors.Is(err, errdefs.ErrConflict) {
				return errdefs.Conflict("network %q already exists", spec.Name)
			}
			return err
		}
		view, err = networkView(tx, nw, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("network created", "network", spec.Name, "subnet", n.Subnet)
	s.events.record(ctx, ObjectNetwork, "create", spec.Name, spec.Subnet)
	return view, nil
}

// ListNetworks returns the networks the caller may see, with their usage.
func (s Networks) List(ctx context.Context) ([]NetworkView, error) { return s.ListIn(ctx, "") }

// ListIn returns the networks the caller may see in workspace ("ws" or
// "org/ws"; "" every workspace), with their usage.
func (s Networks) ListIn(ctx context.Context, workspace string) ([]NetworkView, error) {
	sc, err := s.access.Scope(ctx, access.KindNetwork)
	if err != nil {
		return nil, err
	}
	cs, err := s.access.Scope(ctx, access.KindConfig)
	if err != nil {
		return nil, err
	}
	return viewIn(ctx, s.store, func(tx store.Tx) ([]NetworkView, error) {
		nws, err := listNetworks(tx, sc)
		if err == nil {
			nws, err = inWorkspace(tx, workspace, nws, func(n *store.Network) int64 { return n.WorkspaceID })
		}
		if err != nil {
			return nil, err
		}
		if len(nws) == 0 {
			return nil, nil // no usage to show: the configurations are not read
		}
		owners, err := loadNICOwners(tx, cs)
		if err != nil {
			return nil, err
		}
		return viewsOf(nws, func(n *store.Network) (*NetworkView, error) { return networkView(tx, n, owners) })
	})
}

// GetNetwork returns one network with its pool usage: every held address
// and who holds it (HiddenName for a configuration the caller may not
// see).
func (s Networks) Get(ctx context.Context, name string) (*NetworkView, error) {
	cs, err := s.access.Scope(ctx, access.KindConfig)
	if err != nil {
		return nil, err
	}
	return viewIn(ctx, s.store, func(tx store.Tx) (*NetworkView, error) {
		nw, err := tx.Networks().Get(name)
		if err != nil {
			return nil, err
		}
		owners, err := loadNICOwners(tx, cs)
		if err != nil {
			return nil, err
		}
		return networkView(tx, nw, owners)
	})
}

// DeleteNetwork deletes a network no NIC uses.
func (s Networks) Delete(ctx context.Context, name string) error {
	sc, err := s.access.Scope(ctx, access.KindConfig)
	if err != nil {
		return err
	}
	err = s.update(ctx, func(tx store.Tx) error {
		nw, err := tx.Networks().Get(name)
		if err != nil {
			return err
		}
		owners, err := loadNICOwners(tx, sc)
		if err != nil {
			return err
		}
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		var users []string
		for _, c := range cs {
			for _, v := range c.VMs {
				if vmUsesNetwork(&v, nw.ID) {
					// A configuration the caller may not see is
					// HiddenName (vmUsesNetwork: it has a NIC).
					users = append(users, owners.nic(v.NICs[0].ID).config)
					break
				}
			}
		}
		if len(users) > 0 {
			return errdefs.Conflict("network %q is in use by configuration(s) %v", name, users)
		}
		allocs, err := tx.Allocations().List(nw.ID)
		if err != nil {
			return err
		}
		if len(allocs) > 0 {
			return errdefs.Conflict("network %q still has %d held address(es)", name, len(allocs))
		}
		return tx.Networks().Delete(nw.ID)
	})
	if err == nil {
		s.events.record(ctx, ObjectNetwork, "delete", name, "")
	}
	return err
}

func vmUsesNetwork(v *store.VM, id int64) bool {
	for _, n := range v.NICs {
		if n.NetworkID == id {
			return true
		}
	}
	return false
}

// HiddenName stands, in a network's usage, for a configuration the caller
// may not see: its addresses are listed (they are taken all the same, and
// the pool's count includes them) but not who holds them, since a
// configuration's name is what its workspace keeps to itself.
const HiddenName = "(hidden)"

// nicOwner locates a NIC for pool-usage views.
type nicOwner struct {
	config, vm string
	index      int
}

// nicOwners locates, for the pool-usage views of one caller, every NIC of
// a configuration the caller may see and the external address each such
// NIC's fence holds; any other NIC or external address is HiddenName's.
type nicOwners struct {
	nics     map[int64]nicOwner // by NIC id
	external map[int64]nicOwner // by external allocation id
	// all: the caller sees every configuration; else an external address
	// no visible NIC maps is hidden too (its holder text names a
	// configuration).
	all bool
}

// nic returns who holds NIC id: HiddenName for a configuration the caller
// may not see.
func (o *nicOwners) nic(id int64) nicOwner {
	if n, ok := o.nics[id]; ok {
		return n
	}
	return nicOwner{config: HiddenName}
}

// loadNICOwners reads who holds the addresses of every network, naming
// only the configurations sc shows: the others are HiddenName. It reads
// the configurations sc shows and only those, once (the visible ones and
// then every one, to mark the rest hidden, read them twice).
func loadNICOwners(tx store.Tx, sc access.Scope) (*nicOwners, error) {
	cs, err := listConfigs(tx, sc)
	if err != nil {
		return nil, err
	}
	o := &nicOwners{nics: map[int64]nicOwner{}, external: map[int64]nicOwner{}, all: sc.All}
	for _, c := range cs {
		for _, v := range c.VMs {
			for _, n := range v.NICs {
				owner := nicOwner{config: c.Name, vm: v.Name, index: n.Index}
				o.nics[n.ID] = owner
				if n.ExternalAllocationID != 0 {
					o.external[n.ExternalAllocationID] = owner
				}
			}
		}
	}
	return o, nil
}

// networkView describes nw with its usage; owners nil (a network just
// made) lists no holders.
func networkView(tx store.Tx, nw *store.Network, owners *nicOwners) (*NetworkView, error) {
	v := &NetworkView{
		Name: nw.Name, Subnet: nw.Subnet.String(), Gateway: nw.Gateway.String(),
		PoolSize: ipam.PoolSize(nw.Pools), CreatedAt: nw.CreatedAt,
	}
	v.Workspace, v.Owner = owned(access.NewNames(tx), nw.WorkspaceID, nw.OwnerID, "")
	for _, d := range nw.DNS {
		v.DNS = append(v.DNS, d.String())
	}
	for _, p := range nw.Pools {
		v.Pools = append(v.Pools, p.First.String()+"-"+p.Last.String())
	}
	allocs, err := tx.Allocations().List(nw.ID)
	if err != nil {
		return nil, err
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].IP.Less(allocs[j].IP) })
	for _, a := range allocs {
		u := IPUsage{IP: a.IP.String(), Kind: a.Kind, InPool: ipam.InPools(nw.Pools, a.IP), Holder: a.Holder}
		if u.InPool {
			v.PoolUsed++
		}
		switch {
		case owners == nil:
		case a.Kind == store.AllocInternal:
			nics, err := tx.Allocations().NICs(a.ID)
			if err != nil {
				return nil, err
			}
			for _, n := range nics {
				o := owners.nic(n.ID)
				h := IPHolder{Config: o.config, VM: o.vm, NIC: n.Index}
				if o.config == HiddenName {
					h = IPHolder{Config: HiddenName}
				}
				u.Holders = append(u.Holders, h)
			}
		case !owners.all:
			if _, ok := owners.external[a.ID]; !ok {
				u.Holder = HiddenName
			}
		}
		v.Usage = append(v.Usage, u)
	}
	return v, nil
}

// takeAddress gives a NIC its internal address inside tx: a new pool
// allocation for mode pool, the given address for mode manual (refused when
// another family holds it). It returns the allocation (nil for dhcp).
func (s *core) takeAddress(tx store.Tx, nw *store.Network, mode string, ip netip.Addr) (*store.Allocation, error) {
	switch mode {
	case store.IPModePool:
		return s.alloc.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
	case store.IPModeManual:
		if err := ipam.CheckManual(nw, ip); err != nil {
			return nil, err
		}
		a := &store.Allocation{NetworkID: nw.ID, IP: ip, Kind: store.AllocInternal}
		if err := tx.Allocations().Create(a); err != nil {
			if errors.Is(err, errdefs.ErrConflict) {
				return nil, errdefs.Conflict("address %s on network %q is already held (see network show %s)", ip, nw.Name, nw.Name)
			}
			return nil, err
		}
		return a, nil
	}
	return nil, nil
}
