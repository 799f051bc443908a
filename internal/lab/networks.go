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
	if err := checkName("network", spec.Name); err != nil {
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
		others, err := tx.ListNetworks()
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
		if err := tx.CreateNetwork(nw); err != nil {
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
	s.record(ctx, ObjectNetwork, "create", spec.Name, spec.Subnet)
	return view, nil
}

// ListNetworks returns the networks the caller may see, with their usage.
func (s Networks) List(ctx context.Context) ([]NetworkView, error) {
	sc, err := s.access.Scope(ctx, access.KindNetwork)
	if err != nil {
		return nil, err
	}
	var out []NetworkView
	err = s.store.View(ctx, func(tx store.Tx) error {
		nws, err := listNetworks(tx, sc)
		if err != nil {
			return err
		}
		owners, err := loadNICOwners(tx)
		if err != nil {
			return err
		}
		for i := range nws {
			v, err := networkView(tx, &nws[i], owners)
			if err != nil {
				return err
			}
			out = append(out, *v)
		}
		return nil
	})
	return out, err
}

// GetNetwork returns one network with its pool usage: every held address
// and who holds it.
func (s Networks) Get(ctx context.Context, name string) (*NetworkView, error) {
	var out *NetworkView
	err := s.store.View(ctx, func(tx store.Tx) error {
		nw, err := tx.GetNetwork(name)
		if err != nil {
			return err
		}
		owners, err := loadNICOwners(tx)
		if err != nil {
			return err
		}
		out, err = networkView(tx, nw, owners)
		return err
	})
	return out, err
}

// DeleteNetwork deletes a network no NIC uses.
func (s Networks) Delete(ctx context.Context, name string) error {
	err := s.update(ctx, func(tx store.Tx) error {
		nw, err := tx.GetNetwork(name)
		if err != nil {
			return err
		}
		cs, err := tx.ListConfigs()
		if err != nil {
			return err
		}
		var users []string
		for _, c := range cs {
			for _, v := range c.VMs {
				if vmUsesNetwork(&v, nw.ID) {
					users = append(users, c.Name)
					break
				}
			}
		}
		if len(users) > 0 {
			return errdefs.Conflict("network %q is in use by configuration(s) %v", name, users)
		}
		allocs, err := tx.ListAllocations(nw.ID)
		if err != nil {
			return err
		}
		if len(allocs) > 0 {
			return errdefs.Conflict("network %q still has %d held address(es)", name, len(allocs))
		}
		return tx.DeleteNetwork(nw.ID)
	})
	if err == nil {
		s.record(ctx, ObjectNetwork, "delete", name, "")
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

// nicOwner locates a NIC for pool-usage views.
type nicOwner struct {
	config, vm string
	index      int
}

func loadNICOwners(tx store.Tx) (map[int64]nicOwner, error) {
	cs, err := tx.ListConfigs()
	if err != nil {
		return nil, err
	}
	owners := map[int64]nicOwner{}
	for _, c := range cs {
		for _, v := range c.VMs {
			for _, n := range v.NICs {
				owners[n.ID] = nicOwner{config: c.Name, vm: v.Name, index: n.Index}
			}
		}
	}
	return owners, nil
}

func networkView(tx store.Tx, nw *store.Network, owners map[int64]nicOwner) (*NetworkView, error) {
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
	allocs, err := tx.ListAllocations(nw.ID)
	if err != nil {
		return nil, err
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].IP.Less(allocs[j].IP) })
	for _, a := range allocs {
		u := IPUsage{IP: a.IP.String(), Kind: a.Kind, InPool: ipam.InPools(nw.Pools, a.IP), Holder: a.Holder}
		if u.InPool {
			v.PoolUsed++
		}
		if a.Kind == store.AllocInternal {
			nics, err := tx.NICsWithAllocation(a.ID)
			if err != nil {
				return nil, err
			}
			for _, n := range nics {
				o := owners[n.ID]
				u.Holders = append(u.Holders, IPHolder{Config: o.config, VM: o.vm, NIC: n.Index})
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
		if err := tx.CreateAllocation(a); err != nil {
			if errors.Is(err, errdefs.ErrConflict) {
				return nil, errdefs.Conflict("address %s on network %q is already held (see network show %s)", ip, nw.Name, nw.Name)
			}
			return nil, err
		}
		return a, nil
	}
	return nil, nil
}
