package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// ChangeIPs gives every pool NIC of an undeployed configuration a new
// address from its pool and clears manual ones (until set again with
// SetIP). The NICs leave their old families, so the configuration can run
// unfenced beside them; an old address returns to the pool when its family
// has no member left.
func (s Networks) ChangeIPs(ctx context.Context, name string) (*ConfigView, error) {
	unlock := s.locks.lock(name)
	defer unlock()
	err := s.update(ctx, func(tx store.Tx) error {
		c, err := loadUndeployed(tx, name, "change its addresses")
		if err != nil {
			return err
		}
		var old []int64
		for _, vm := range c.VMs {
			for _, n := range vm.NICs {
				switch n.IPMode {
				case store.IPModePool:
					nw, err := tx.Networks().GetByID(n.NetworkID)
					if err != nil {
						return err
					}
					a, err := s.alloc.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
					if err != nil {
						return fmt.Errorf("VM %q: %w", vm.Name, err)
					}
					old = append(old, n.AllocationID)
					n.IP, n.AllocationID = a.IP, a.ID
				case store.IPModeManual:
					old = append(old, n.AllocationID)
					n.IP, n.AllocationID = netip.Addr{}, 0
				default:
					continue
				}
				if err := tx.Configs().UpdateNIC(&n); err != nil {
					return err
				}
			}
		}
		return s.releaseAllocations(tx, old)
	})
	if err != nil {
		return nil, fmt.Errorf("change addresses of %q: %w", name, err)
	}
	s.events.record(ctx, ObjectConfig, "change-ips", name, "")
	return Configs{s.core}.Get(ctx, name)
}

// SetIP sets one NIC's address: "pool" takes a new pool address, "dhcp"
// clears it, an address makes it manual (refused when another family holds
// it). The NIC leaves its old family.
func (s Networks) SetIP(ctx context.Context, config, vmName string, nicIndex int, ip string) (*ConfigView, error) {
	// An empty ip is not a default here: it would silently re-address a
	// NIC from the pool when a client merely forgot the field.
	if strings.TrimSpace(ip) == "" {
		return nil, errdefs.Invalid("set address of %s/%s NIC %d: ip is required (an IPv4 address, %q or %q)", config, vmName, nicIndex, store.IPModePool, store.IPModeDHCP)
	}
	unlock := s.locks.lock(config)
	defer unlock()
	err := s.update(ctx, func(tx store.Tx) error {
		c, err := loadUndeployed(tx, config, "change its addresses")
		if err != nil {
			return err
		}
		n, err := findNIC(c.Config, vmName, nicIndex)
		if err != nil {
			return err
		}
		nw, err := tx.Networks().GetByID(n.NetworkID)
		if err != nil {
			return err
		}
		mode, addr, err := parseIPMode(VMSpec{Name: vmName, Network: nw.Name, IP: ip})
		if err != nil {
			return err
		}
		old := n.AllocationID
		// Release first so that setting the address a NIC already holds
		// alone works; the transaction keeps it atomic.
		n.IP, n.AllocationID, n.IPMode = netip.Addr{}, 0, mode
		if err := tx.Configs().UpdateNIC(n); err != nil {
			return err
		}
		if err := s.releaseAllocations(tx, []int64{old}); err != nil {
			return err
		}
		a, err := s.takeAddress(tx, nw, mode, addr)
		if err != nil {
			return err
		}
		if a != nil {
			n.IP, n.AllocationID = a.IP, a.ID
		}
		return tx.Configs().UpdateNIC(n)
	})
	if err != nil {
		return nil, fmt.Errorf("set address of %s/%s NIC %d: %w", config, vmName, nicIndex, err)
	}
	s.events.record(ctx, ObjectConfig, "set-ip", config, fmt.Sprintf("VM %s NIC %d: %s", vmName, nicIndex, ip))
	// The view is read after the commit, outside the writer's turn.
	return Configs{s.core}.Get(ctx, config)
}

// loadedConfig is a configuration read inside a transaction.
type loadedConfig struct{ *store.Config }

// loadUndeployed reads a configuration that must be undeployed for what.
func loadUndeployed(tx store.Tx, name, what string) (loadedConfig, error) {
	c, err := tx.Configs().Get(name)
	if err != nil {
		return loadedConfig{}, err
	}
	if c.State != store.StateUndeployed {
		return loadedConfig{}, errdefs.Conflict("configuration %q is %s; undeploy it to %s", name, c.State, what)
	}
	if err := checkKind(c, store.KindConfig, what); err != nil {
		return loadedConfig{}, err
	}
	return loadedConfig{c}, nil
}

func findNIC(c *store.Config, vmName string, index int) (*store.NIC, error) {
	vm, err := deploy.VMNamed(c, vmName)
	if err != nil {
		return nil, err
	}
	for i := range vm.NICs {
		if vm.NICs[i].Index == index {
			return &vm.NICs[i], nil
		}
	}
	return nil, errdefs.NotFound("VM %q of configuration %q has no NIC %d", vmName, c.Name, index)
}
