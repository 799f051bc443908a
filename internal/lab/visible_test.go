package lab_test

// What the lab's views show of objects their caller may not see: a
// network's usage and the cleanup view.

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"stagehand/internal/auth"
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
		nw, err := tx.Networks().Get("tlan")
		if err != nil {
			return err
		}
		for i, name := range []string{"web", "bobs"} {
			c, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			a := &store.Allocation{NetworkID: nw.ID, IP: netip.AddrFrom4([4]byte{10, 9, 0, byte(40 + i)}), Kind: store.AllocExternal, Holder: "fence of " + name + " (a)"}
			if err := tx.Allocations().Create(a); err != nil {
				return err
			}
			n := c.VMs[0].NICs[0]
			n.ExternalAllocationID = a.ID
			if err := tx.Configs().UpdateNIC(&n); err != nil {
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

// expiredConfig makes, as the system, a configuration of base in
// workspace ws owned by owner (0: none) whose storage lease has a day to
// run.
func (p *people) expiredConfig(t *testing.T, name, ws string, owner int64) {
	t.Helper()
	d := day
	if _, err := p.e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: name, Workspace: ws, StorageLease: &d, VMs: []lab.VMSpec{vm("a", "base", "")}}); err != nil {
		t.Fatal(err)
	}
	err := p.e.db.Update(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		return tx.Objects().SetOwnership(store.ObjectConfig, c.ID, p.ws[ws], owner)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCleanupShowsOnlyWhatTheCallerSees: three configurations whose
// storage leases ran out, in team (shared), other (shared) and priv
// (private, pat's). Each caller's cleanup view lists only those they may
// see where their role has cleanup.read (a token restricted to
// console-only sees nothing); a viewer sees team's but may delete
// nothing, and applying the
// cleanup as them deletes nothing; applied by bob it deletes only other's;
// the system sees all three.
func TestCleanupShowsOnlyWhatTheCallerSees(t *testing.T) {
	clock := newClock()
	e := newEnv(t, func(o *lab.Options) { o.Now = clock.Now })
	p := newPeople(t, e)
	e.template("base")
	p.expiredConfig(t, "team-a", "team", p.users["alice"])
	p.expiredConfig(t, "other-b", "other", p.users["bob"])
	p.expiredConfig(t, "priv-p", "priv", p.users["pat"])
	clock.Advance(2 * day)

	view := func(ctx context.Context, opts lab.CleanupOptions) (names, deletable string) {
		t.Helper()
		rep, err := e.svc.Leases.Cleanup(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var n, d []string
		for _, it := range rep.Items {
			n = append(n, it.Name)
			if it.Deletable {
				d = append(d, it.Name)
			}
		}
		return strings.Join(n, " "), strings.Join(d, " ")
	}
	for _, c := range []struct{ who, names, deletable string }{
		{"alice", "team-a", "team-a"}, // admin of team; author in priv, where priv-p is pat's
		{"vera", "team-a", ""},        // a viewer deletes nothing
		{"pat", "priv-p", "priv-p"},
		{"bob", "other-b", "other-b"},
	} {
		if names, deletable := view(p.as(c.who), lab.CleanupOptions{}); names != c.names || deletable != c.deletable {
			t.Errorf("%s's cleanup view: %q, deletable %q; want %q, %q", c.who, names, deletable, c.names, c.deletable)
		}
	}
	// alice's tokens restricted to team: as a viewer she sees team's and
	// deletes nothing; console-only has no cleanup.read.
	for _, c := range []struct {
		role             auth.Role
		names, deletable string
	}{{auth.RoleViewer, "team-a", ""}, {auth.RoleConsoleOnly, "", ""}} {
		tok := auth.WithIdentity(context.Background(), auth.Identity{UserID: p.users["alice"], Name: "alice", Via: auth.ViaToken,
			Restrict: &auth.Restriction{WorkspaceID: p.ws["team"], MaxRole: c.role}})
		if names, deletable := view(tok, lab.CleanupOptions{}); names != c.names || deletable != c.deletable {
			t.Errorf("alice's token restricted to team as %s: %q, deletable %q; want %q, %q", c.role, names, deletable, c.names, c.deletable)
		}
	}
	if names, _ := view(context.Background(), lab.CleanupOptions{}); names != "team-a other-b priv-p" {
		t.Errorf("the system's cleanup view: %q", names)
	}

	view(p.as("vera"), lab.CleanupOptions{Apply: true})
	view(p.as("bob"), lab.CleanupOptions{Apply: true})
	left := ""
	cs, err := e.svc.Configs.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		left += c.Name + " "
	}
	if left != "team-a priv-p " {
		t.Errorf("after vera's and bob's cleanup --apply the lab holds %q, want team-a and priv-p", left)
	}
}
