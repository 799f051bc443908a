package lab_test

// What the lab's views show of objects their caller may not see: a
// network's usage and the cleanup view.

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// holdersOf renders a network's usage as "ip kind holders" lines.
func holdersOf(v *lab.NetworkView) string {
	var b strings.Builder
	for _, u := range v.Usage {
		b.WriteString(u.IP + " " + u.Kind)
		for _, h := range u.Holders {
			b.WriteString(" " + h.Config + "/" + h.VM)
		}
		if u.Holder != "" {
			b.WriteString(" [" + u.Holder + "]")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestNetworkUsageHidesConfigsOfOthers: a network of workspace team
// carries a configuration of team and one of workspace other. alice (of
// team) sees both addresses, internal and external, and the pool count
// with both, but the other workspace's configuration only as "(hidden)",
// also in the holder of its external address and in the refusal to
// delete the network; the system sees every name.
func TestNetworkUsageHidesConfigsOfOthers(t *testing.T) {
	e := newEnv(t)
	p := newPeople(t, e)
	e.template("base")
	alice := p.as("alice")
	if _, err := e.svc.Networks.Create(alice, lab.NetworkSpec{Name: "tlan", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.10-10.9.0.50"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{vm("a", "base", "tlan")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: "bobs", Workspace: "other", VMs: []lab.VMSpec{vm("a", "base", "tlan")}}); err != nil {
		t.Fatal(err)
	}
	// The external addresses a deployment's fences would hold, written
	// as the deployment writes them (allocation, then the NIC's link).
	err := e.db.Update(context.Background(), func(tx store.Tx) error {
		nw, err := tx.GetNetwork("tlan")
		if err != nil {
			return err
		}
		for i, name := range []string{"web", "bobs"} {
			c, err := tx.GetConfig(name)
			if err != nil {
				return err
			}
			a := &store.Allocation{NetworkID: nw.ID, IP: netip.AddrFrom4([4]byte{10, 9, 0, byte(40 + i)}), Kind: store.AllocExternal, Holder: "fence of " + name + " (a)"}
			if err := tx.CreateAllocation(a); err != nil {
				return err
			}
			n := c.VMs[0].NICs[0]
			n.ExternalAllocationID = a.ID
			if err := tx.UpdateNIC(&n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	sys, err := e.svc.Networks.Get(context.Background(), "tlan")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Networks.Get(alice, "tlan")
	if err != nil {
		t.Fatal(err)
	}
	all := holdersOf(sys)
	if !strings.Contains(all, "bobs/a") || !strings.Contains(all, "[fence of bobs (a)]") || !strings.Contains(all, "web/a") {
		t.Errorf("the system's view of tlan names every holder:\n%s", all)
	}
	seen := holdersOf(got)
	if strings.Contains(seen, "bobs") {
		t.Errorf("alice's view of tlan names a configuration of workspace other:\n%s", seen)
	}
	if strings.Count(seen, lab.HiddenName) != 2 || !strings.Contains(seen, "web/a") || !strings.Contains(seen, "[fence of web (a)]") {
		t.Errorf("alice's view of tlan: want web named and bobs's two addresses %s:\n%s", lab.HiddenName, seen)
	}
	if len(got.Usage) != len(sys.Usage) || got.PoolUsed != sys.PoolUsed {
		t.Errorf("alice sees %d addresses, %d of the pool used; the system %d, %d: hiding names must not hide addresses",
			len(got.Usage), got.PoolUsed, len(sys.Usage), sys.PoolUsed)
	}
	ns, err := e.svc.Networks.List(alice)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ns {
		if ns[i].Name == "tlan" && holdersOf(&ns[i]) != seen {
			t.Errorf("network list shows tlan as\n%s\nnetwork show as\n%s", holdersOf(&ns[i]), seen)
		}
	}
	err = e.svc.Networks.Delete(alice, "tlan")
	if err == nil || strings.Contains(err.Error(), "bobs") || !strings.Contains(err.Error(), "web") || !strings.Contains(err.Error(), lab.HiddenName) {
		t.Errorf("alice deleting tlan: %v; want a conflict naming web and %s, not bobs", err, lab.HiddenName)
	}
}
