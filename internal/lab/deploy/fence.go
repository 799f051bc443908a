package deploy

import (
	"fmt"
	"net/netip"
	"sync"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/ipam"
	"stagehand/internal/store"
)

// externalAddrs hands out and takes back the external addresses of fenced
// deployments.
type externalAddrs struct {
	alloc  *ipam.Allocator
	cursor externalCursor
}

// externalCursor remembers, per network, the last external address handed
// out, so that each deploy takes the next free ones in rotation rather
// than the addresses the previous deployment just returned. It lives in
// memory: after a restart the rotation starts again from the pool's start.
type externalCursor struct {
	mu   sync.Mutex
	last map[int64]netip.Addr
}

func (c *externalCursor) get(network int64) netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[network]
}

func (c *externalCursor) set(network int64, a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[int64]netip.Addr{}
	}
	c.last[network] = a
}

// allocate gives, inside tx, every addressed NIC of c a new
// external address from its network's pool, held by the deployment. The
// pool being exhausted fails the whole transaction: nothing is held.
func (x *externalAddrs) allocate(tx store.Tx, c *store.Config) error {
	for vi := range c.VMs {
		vm := &c.VMs[vi]
		for ni := range vm.NICs {
			n := &vm.NICs[ni]
			if !n.IP.IsValid() {
				continue
			}
			nw, err := tx.Networks().GetByID(n.NetworkID)
			if err != nil {
				return err
			}
			a, err := x.alloc.Allocate(tx, nw, store.AllocExternal, fmt.Sprintf("fence of %s (%s)", c.Name, vm.Name), x.cursor.get(nw.ID))
			if err != nil {
				return fmt.Errorf("external address for VM %q: %w", vm.Name, err)
			}
			x.cursor.set(nw.ID, a.IP)
			n.ExternalAllocationID = a.ID
			if err := tx.Configs().UpdateNIC(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// release returns, inside tx, the external addresses of c's NICs to
// their pools, and the VXLAN identifiers of a spread fence.
func (x *externalAddrs) release(tx store.Tx, c *store.Config) error {
	if _, err := tx.FenceVNIs().Free(c.ID); err != nil {
		return err
	}
	for vi := range c.VMs {
		for ni := range c.VMs[vi].NICs {
			n := &c.VMs[vi].NICs[ni]
			if n.ExternalAllocationID == 0 {
				continue
			}
			id := n.ExternalAllocationID
			n.ExternalAllocationID = 0
			if err := tx.Configs().UpdateNIC(n); err != nil {
				return err
			}
			a, err := tx.Allocations().Get(id)
			if isNotFound(err) {
				continue
			} else if err != nil {
				return err
			}
			if err := tx.Allocations().Delete(id); err != nil {
				return err
			}
			x.alloc.Released(a.NetworkID, a.IP)
		}
	}
	return nil
}

func isNotFound(err error) bool { return errdefs.Kind(err) == errdefs.ErrNotFound }

// fenceSpec describes c's fence: per network, the 1:1 mappings of its
// NICs' internal addresses to their external ones.
func (d *Deployments) fenceSpec(tx store.Tx, c *store.Config) (fence.FenceSpec, error) {
	policy, err := fence.ParsePolicy(c.FencePolicy) // the policy's rules live there only
	if err != nil {
		return fence.FenceSpec{}, fmt.Errorf("configuration %q: %w", c.Name, err)
	}
	allow, err := allowRules(c)
	if err != nil {
		return fence.FenceSpec{}, err
	}
	spec := fence.FenceSpec{ID: d.host.fence(c.ID), Policy: policy, Allow: allow}
	byNet := map[int64]int{}
	for _, vm := range c.VMs {
		for _, n := range vm.NICs {
			i, ok := byNet[n.NetworkID]
			if !ok {
				nw, err := tx.Networks().GetByID(n.NetworkID)
				if err != nil {
					return spec, err
				}
				spec.Networks = append(spec.Networks, fence.FenceNetwork{
					Name: nw.Name, OutsideBridge: fence.BridgeName(nw.Name),
					Subnet: nw.Subnet, Gateway: nw.Gateway, DNS: nw.DNS,
				})
				i = len(spec.Networks) - 1
				byNet[n.NetworkID] = i
			}
			if n.ExternalAllocationID == 0 || !n.IP.IsValid() {
				continue
			}
			a, err := tx.Allocations().Get(n.ExternalAllocationID)
			if err != nil {
				return spec, err
			}
			spec.Networks[i].Mappings = append(spec.Networks[i].Mappings, fence.Mapping{Internal: n.IP, External: a.IP, MAC: n.MAC})
		}
	}
	return spec, nil
}

// ExternalIPs maps NIC IDs to their external addresses, for views.
func ExternalIPs(tx store.Tx, c *store.Config) map[int64]netip.Addr {
	out := map[int64]netip.Addr{}
	for _, vm := range c.VMs {
		for _, n := range vm.NICs {
			if n.ExternalAllocationID != 0 {
				if a, err := tx.Allocations().Get(n.ExternalAllocationID); err == nil {
					out[n.ID] = a.IP
				}
			}
		}
	}
	return out
}
