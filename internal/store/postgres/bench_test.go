package postgres

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"stagehand/internal/ipam"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// The benchmarks run the same bookkeeping on both stores, so that
// PostgreSQL ÷ SQLite can be read off one run (docs/benchmarks.md):
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/store/postgres/

// bothStores runs fn as a sub-benchmark on a new SQLite file and on a new
// PostgreSQL database of the package's server.
func bothStores(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "stagehand.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		s := openTest(b)
		defer s.Close()
		fn(b, s)
		b.ReportMetric(float64(s.Retries()), "retries")
	})
}

func mustUpdate(b *testing.B, s store.Store, fn func(store.Tx) error) {
	b.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		b.Fatal(err)
	}
}

// benchNetwork makes a network with a /16 pool.
func benchNetwork(b *testing.B, s store.Store, name string) *store.Network {
	nw := &store.Network{Name: name, Subnet: netip.MustParsePrefix("10.20.0.0/16"), Gateway: netip.MustParseAddr("10.20.0.1"),
		Pools: []store.IPRange{{First: netip.MustParseAddr("10.20.0.10"), Last: netip.MustParseAddr("10.20.255.250")}}}
	mustUpdate(b, s, func(tx store.Tx) error { return tx.Networks().Create(nw) })
	return nw
}

// sourceConfig makes a configuration of vms VMs, each with a disk on a
// base layer of its own and a NIC with a pool address.
func sourceConfig(b *testing.B, s store.Store, al *ipam.Allocator, nw *store.Network, name string, vms int) {
	mustUpdate(b, s, func(tx store.Tx) error {
		c := store.Config{Name: name, State: store.StateUndeployed}
		for i := range vms {
			base := &store.Layer{Path: fmt.Sprintf("layers/%s-base-%d.qcow2", name, i), Frozen: true, VirtualSize: 1 << 30}
			if err := tx.Layers().Create(base); err != nil {
				return err
			}
			top := &store.Layer{Path: fmt.Sprintf("layers/%s-top-%d.qcow2", name, i), ParentID: base.ID, VirtualSize: 1 << 30}
			if err := tx.Layers().Create(top); err != nil {
				return err
			}
			a, err := al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
			if err != nil {
				return err
			}
			c.VMs = append(c.VMs, store.VM{Name: fmt.Sprintf("vm%d", i), CPUs: 1, MemoryMiB: 256, State: "stopped",
				Disks: []store.Disk{{TopLayerID: top.ID}},
				NICs:  []store.NIC{{NetworkID: nw.ID, MAC: fmt.Sprintf("52:54:%s:00:%02x", macOf(name), i), IPMode: store.IPModePool, IP: a.IP, AllocationID: a.ID}}})
		}
		return tx.Configs().Create(&c)
	})
}

func macOf(name string) string {
	var h uint16
	for _, c := range name {
		h = h*31 + uint16(c)
	}
	return fmt.Sprintf("%02x:%02x", h>>8, h&0xff)
}

// linkedClone is the bookkeeping of a linked clone of src named name: the
// journal entry, then one transaction that freezes each source top, gives
// the source and the clone a new writable top on it, allocates the clone's
// addresses, writes the clone with its lease and event and commits the
// journal entry, then the entry's deletion.
func linkedClone(s store.Store, al *ipam.Allocator, nw *store.Network, src, name string, seq int) error {
	ctx := context.Background()
	op := &store.Op{Kind: "clone", Subject: name}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Ops().Create(op) }); err != nil {
		return err
	}
	err := s.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(src)
		if err != nil {
			return err
		}
		clone := store.Config{Name: name, State: store.StateUndeployed, Owner: c.Owner}
		for i, vm := range c.VMs {
			cv := store.VM{Name: vm.Name, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, State: "stopped"}
			for _, d := range vm.Disks {
				top, err := tx.Layers().Get(d.TopLayerID)
				if err != nil {
					return err
				}
				top.Frozen = true
				if err := tx.Layers().Update(top); err != nil {
					return err
				}
				srcTop := &store.Layer{Path: fmt.Sprintf("layers/%s-%d-%d-src.qcow2", name, i, d.Index), ParentID: top.ID, VirtualSize: top.VirtualSize}
				cloneTop := &store.Layer{Path: fmt.Sprintf("layers/%s-%d-%d.qcow2", name, i, d.Index), ParentID: top.ID, VirtualSize: top.VirtualSize}
				if err := tx.Layers().Create(srcTop); err != nil {
					return err
				}
				if err := tx.Layers().Create(cloneTop); err != nil {
					return err
				}
				if err := tx.Configs().SetDiskTop(d.ID, srcTop.ID); err != nil {
					return err
				}
				cv.Disks = append(cv.Disks, store.Disk{Index: d.Index, TopLayerID: cloneTop.ID})
			}
			for _, n := range vm.NICs {
				a, err := al.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
				if err != nil {
					return err
				}
				cv.NICs = append(cv.NICs, store.NIC{Index: n.Index, NetworkID: n.NetworkID, MAC: fmt.Sprintf("52:55:%02x:%02x:%02x:%02x", seq>>16&0xff, seq>>8&0xff, seq&0xff, i),
					IPMode: store.IPModePool, IP: a.IP, AllocationID: a.ID})
			}
			clone.VMs = append(clone.VMs, cv)
		}
		if err := tx.Configs().Create(&clone); err != nil {
			return err
		}
		if err := tx.Leases().Put(&store.Lease{ConfigID: clone.ID, StorageExpires: time.Now().Add(24 * time.Hour), UndeployAction: store.UndeploySave, LastUsed: time.Now()}); err != nil {
			return err
		}
		if err := tx.Events().Add(&store.Event{Actor: "bench", Action: "clone", Object: "config", Subject: name, Result: "ok"}); err != nil {
			return err
		}
		op.Committed = true
		return tx.Ops().Update(op)
	})
	if err != nil {
		al.Forget()
		return err
	}
	return s.Update(ctx, func(tx store.Tx) error { return tx.Ops().Delete(op.ID) })
}

// deployCycle is the bookkeeping of deploying name and undeploying it:
// deploying (state, event), deployed (each VM running, the deployment
// lease, event), then undeployed (each VM stopped, event).
func deployCycle(s store.Store, name string) error {
	ctx := context.Background()
	setState := func(state, vmState, action string, lease bool) error {
		return s.Update(ctx, func(tx store.Tx) error {
			c, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			c.State = state
			if err := tx.Configs().Update(c); err != nil {
				return err
			}
			if vmState != "" {
				for i := range c.VMs {
					c.VMs[i].State = vmState
					if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
						return err
					}
				}
			}
			if lease {
				l, err := tx.Leases().OfConfig(c.ID)
				if err != nil {
					l = &store.Lease{ConfigID: c.ID, UndeployAction: store.UndeploySave, DeployLease: time.Hour}
				}
				l.DeployExpires, l.LastUsed = time.Now().Add(l.DeployLease), time.Now()
				if err := tx.Leases().Put(l); err != nil {
					return err
				}
			}
			return tx.Events().Add(&store.Event{Actor: "bench", Action: action, Object: "config", Subject: name, Result: "ok"})
		})
	}
	if err := setState(store.StateDeploying, "", "deploy", false); err != nil {
		return err
	}
	if err := setState(store.StateDeployed, "running", "deployed", true); err != nil {
		return err
	}
	return setState(store.StateUndeployed, "stopped", "undeploy", false)
}

// BenchmarkLinkedClone: one op is the bookkeeping of one linked clone of
// a 3-VM configuration (3 transactions).
func BenchmarkLinkedClone(b *testing.B) {
	bothStores(b, func(b *testing.B, s store.Store) {
		al := ipam.NewAllocator()
		nw := benchNetwork(b, s, "lan")
		sourceConfig(b, s, al, nw, "src", 3)
		b.ResetTimer()
		for i := range b.N {
			if err := linkedClone(s, al, nw, "src", fmt.Sprintf("clone-%d", i), i); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDeployBookkeeping: one op is deploying and undeploying a 3-VM
// configuration's records (3 transactions).
func BenchmarkDeployBookkeeping(b *testing.B) {
	bothStores(b, func(b *testing.B, s store.Store) {
		al := ipam.NewAllocator()
		nw := benchNetwork(b, s, "lan")
		sourceConfig(b, s, al, nw, "web", 3)
		b.ResetTimer()
		for range b.N {
			if err := deployCycle(s, "web"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllocations10k: one op is 10,000 address allocations, each in
// its own transaction through ipam.Allocator (the lab's path), on a new
// network.
func BenchmarkAllocations10k(b *testing.B) {
	bothStores(b, func(b *testing.B, s store.Store) {
		for i := range b.N {
			nw := benchNetwork(b, s, fmt.Sprintf("lan%d", i))
			al := ipam.NewAllocator()
			for range 10_000 {
				mustUpdate(b, s, func(tx store.Tx) error {
					_, err := al.Allocate(tx, nw, store.AllocExternal, "bench", netip.Addr{})
					return err
				})
			}
		}
	})
}

// BenchmarkHeartbeats: one op is one host's heartbeat (Hosts.Touch in its
// own transaction), 64 hosts beating at once: the rate a store sustains
// bounds how many hosts can beat every cluster.HeartbeatInterval
// (docs/benchmarks.md, "How far it goes").
func BenchmarkHeartbeats(b *testing.B) {
	bothStores(b, func(b *testing.B, s store.Store) {
		const hosts = 64
		for i := range hosts {
			mustUpdate(b, s, func(tx store.Tx) error {
				return tx.Hosts().Register(&store.Host{Name: fmt.Sprintf("h%d", i), AdvertiseURL: "https://h", MemoryMiB: 1024, CPUs: 2,
					StartedAt: time.Now(), LastSeen: time.Now()})
			})
		}
		var next atomic.Int64
		b.SetParallelism(hosts / max(1, runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			name := fmt.Sprintf("h%d", next.Add(1)%hosts)
			for pb.Next() {
				if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Hosts().Touch(name, time.Now()) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkEvents: one op is one event recorded in its own transaction
// by one of 64 writers at once (on PostgreSQL each commit also notifies
// every listening daemon: pg_notify serialises committing notifiers).
func BenchmarkEvents(b *testing.B) {
	bothStores(b, func(b *testing.B, s store.Store) {
		b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Update(context.Background(), func(tx store.Tx) error {
					return tx.Events().Add(&store.Event{Actor: "bench", Action: "deploy", Object: "config", Subject: "web", Result: "ok"})
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkEventReads: one op is what the event relay does per
// notification on each daemon: read the events after the last one seen
// (here: one event), 64 readers at once.
func BenchmarkEventReads(b *testing.B) {
	bothStores(b, func(b *testing.B, s store.Store) {
		for range 1000 {
			mustUpdate(b, s, func(tx store.Tx) error {
				return tx.Events().Add(&store.Event{Actor: "bench", Action: "deploy", Object: "config", Subject: "web", Result: "ok"})
			})
		}
		var next atomic.Int64
		b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				after := next.Add(1) % 999
				if err := s.View(context.Background(), func(tx store.Tx) error {
					_, err := tx.Events().List(after, 1)
					return err
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
