package fence

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// benchNamespace creates a throwaway named namespace (sht-<random>, like
// newTestNS) for a benchmark, with loopback up, deleted when it ends.
func benchNamespace(b *testing.B) netns.NsHandle {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root to create network namespaces")
	}
	name := "sht-" + randHex(10)
	h, err := createNamedNamespace(name)
	if err != nil {
		b.Fatalf("create namespace: %v", err)
	}
	b.Cleanup(func() {
		h.Close()
		if err := deleteNamedNamespace(name); err != nil {
			b.Errorf("delete namespace %s: %v", name, err)
		}
	})
	nl, err := netlinkAt(h)
	if err != nil {
		b.Fatal(err)
	}
	defer nl.Close()
	if lo, err := nl.LinkByName("lo"); err == nil {
		_ = nl.LinkSetUp(lo)
	}
	return h
}

// BenchmarkFenceSetup times Setup and Teardown of a fence for a 3-VM
// deployment on one network (namespace, inside bridge, veth to the outside
// bridge, addresses, routes, ARP settings, the nftables ruleset, the inside
// DHCP server with 3 reservations; no VMs plugged in), all in a throwaway
// "daemon" namespace holding the outside bridge. Besides the totals it
// reports the time of each of Setup's steps, through the same hooks the
// rollback tests use to fail them.
func BenchmarkFenceSetup(b *testing.B) {
	ctx := context.Background()
	daemonNS := benchNamespace(b)
	network := "net-" + randHex(8)
	outside := BridgeName(network)
	if err := EnsureBridge(ctx, daemonNS, outside, netip.PrefixFrom(bedGateway, 24)); err != nil {
		b.Fatal(err)
	}
	n := FenceNetwork{Name: network, OutsideBridge: outside, Subnet: bedSubnet, Gateway: bedGateway,
		DNS: []netip.Addr{netip.MustParseAddr("10.99.0.2")}}
	for i := range 3 {
		n.Mappings = append(n.Mappings, Mapping{
			Internal: netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}),
			External: netip.AddrFrom4([4]byte{10, 99, 0, byte(50 + i)}),
			MAC:      randomMAC(),
		})
	}
	// Two log lines per fence would bury the results.
	quiet := slog.New(slog.DiscardHandler)

	// A fence whose Teardown did not finish is removed at the end.
	var pending []FenceSpec
	b.Cleanup(func() {
		for _, spec := range pending {
			_ = Remove(context.Background(), daemonNS, spec, quiet)
		}
	})

	steps := map[string]time.Duration{}
	var order []string
	var tSetup, tTeardown time.Duration
	for b.Loop() {
		spec := FenceSpec{ID: "b" + randHex(10), Policy: PolicyInOut, Networks: []FenceNetwork{n}}
		pending = append(pending, spec)
		// Each step's time runs from its hook to the next one's.
		current, since := "before namespace", time.Now()
		hooks := &setupHooks{failAt: func(step string) error {
			now := time.Now()
			if _, seen := steps[current]; !seen {
				order = append(order, current)
			}
			steps[current] += now.Sub(since)
			current, since = strings.Fields(step)[0], now // "network NAME" → "network"
			return nil
		}}
		start := time.Now()
		f, err := setup(ctx, daemonNS, spec, quiet, hooks)
		if err != nil {
			b.Fatalf("Setup: %v", err)
		}
		tSetup += time.Since(start)
		start = time.Now()
		if err := f.Teardown(ctx); err != nil {
			b.Fatalf("Teardown: %v", err)
		}
		tTeardown += time.Since(start)
		pending = pending[:len(pending)-1]
	}
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(perOp(tSetup), "ms-setup/op")
	b.ReportMetric(perOp(tTeardown), "ms-teardown/op")
	for _, step := range order {
		b.ReportMetric(perOp(steps[step]), fmt.Sprintf("ms-%s/op", strings.ReplaceAll(step, " ", "-")))
	}
}
