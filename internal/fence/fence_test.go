package fence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"stagehand/internal/errdefs"
	"stagehand/internal/syncbuf"
)

// The fence tests build, in throwaway namespaces only:
//
//	daemon ns:  outside bridge 10.99.0.1/24 (+ 10.98.0.1 on lo, "beyond the subnet")
//	host ns:    an outside host 10.99.0.20 on the outside bridge
//	fence ns:   made by Setup
//	vm ns:      one per fake VM, a veth on the fence's inside bridge

var (
	bedSubnet  = netip.MustParsePrefix("10.99.0.0/24")
	bedGateway = netip.MustParseAddr("10.99.0.1")
	bedHost    = netip.MustParseAddr("10.99.0.20")
	bedBeyond  = netip.MustParseAddr("10.98.0.1")
)

type fenceBed struct {
	daemonNS  netns.NsHandle
	hostNS    netns.NsHandle
	hostName  string // the host namespace's name, for ip netns exec
	hostIf    string
	network   string
	outsideBr string
}

func newFenceBed(t *testing.T) *fenceBed {
	t.Helper()
	ctx := context.Background()
	daemonNS, _ := newTestNS(t)
	b := &fenceBed{daemonNS: daemonNS, network: "net-" + randHex(8)}
	b.outsideBr = BridgeName(b.network)
	if err := EnsureBridge(ctx, daemonNS, b.outsideBr, netip.PrefixFrom(bedGateway, 24)); err != nil {
		t.Fatal(err)
	}
	dh := mustNetlink(t, daemonNS)
	lo, err := dh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := dh.AddrAdd(lo, &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(bedBeyond, 32))}); err != nil {
		t.Fatal(err)
	}
	b.hostNS, b.hostName = newTestNS(t)
	b.hostIf = addVeth(t, daemonNS, b.outsideBr, b.hostNS, randomMAC())
	configureIP(t, b.hostNS, b.hostIf, netip.PrefixFrom(bedHost, 24), bedGateway)
	return b
}

// configureIP gives ifname in ns an address and a default route, as a
// guest's network configuration would.
func configureIP(t *testing.T, ns netns.NsHandle, ifname string, addr netip.Prefix, gw netip.Addr) {
	t.Helper()
	h := mustNetlink(t, ns)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixToIPNet(addr)}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{Gw: gw.AsSlice(), LinkIndex: l.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
}

type fakeVM struct {
	name     string
	mac      string
	internal netip.Addr
	external netip.Addr
	ns       netns.NsHandle
	nsName   string
	ifname   string
}

func (b *fenceBed) spec(policy Policy, vms ...*fakeVM) FenceSpec {
	n := FenceNetwork{Name: b.network, OutsideBridge: b.outsideBr, Subnet: bedSubnet, Gateway: bedGateway,
		DNS: []netip.Addr{netip.MustParseAddr("10.99.0.2")}}
	for _, vm := range vms {
		n.Mappings = append(n.Mappings, Mapping{Internal: vm.internal, External: vm.external, MAC: vm.mac})
	}
	return FenceSpec{ID: "t" + randHex(10), Policy: policy, Networks: []FenceNetwork{n}}
}

// setupFence sets up a fence for vms and plugs each VM into it.
func (b *fenceBed) setupFence(t *testing.T, policy Policy, vms ...*fakeVM) (*Fence, FenceSpec) {
	t.Helper()
	spec := b.spec(policy, vms...)
	logs := &syncbuf.Buffer{}
	f, err := Setup(context.Background(), b.daemonNS, spec, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Teardown(context.Background()); err != nil {
			t.Errorf("Teardown: %v", err)
		}
		_ = Remove(context.Background(), b.daemonNS, spec, nil)
	})
	// The fence logs to the logger it was given (the daemon's).
	if want := `msg="fence set up" fence=` + spec.ID; !strings.Contains(logs.String(), want) {
		t.Errorf("the fence's log lacks %q:\n%s", want, logs)
	}
	br, err := f.InsideBridge(b.network)
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		vm.ns, vm.nsName = newTestNS(t)
		vm.ifname = addVeth(t, f.Namespace(), br, vm.ns, vm.mac)
	}
	return f, spec
}

func (vm *fakeVM) configure(t *testing.T) {
	t.Helper()
	configureIP(t, vm.ns, vm.ifname, netip.PrefixFrom(vm.internal, 24), bedGateway)
}

// serveIdentity listens on addr:8080 inside ns; it answers each
// connection with "name saw REMOTE-IP" and closes it (see serveOn).
func serveIdentity(t *testing.T, ns netns.NsHandle, name string, addr netip.Addr) {
	t.Helper()
	serveOn(t, ns, name, addr, 8080)
}

// dialFrom connects from inside ns to addr:8080 and returns the answer.
func dialFrom(ns netns.NsHandle, addr netip.Addr) (string, error) { return dialPort(ns, addr, 8080) }

func TestFencePolicies(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	for _, tc := range []struct {
		policy       Policy
		wantIn       bool // the outside host reaches the VM through its external address
		wantOut      bool // the VM reaches the outside host, seen as its external address
		wantOutsider bool // the VM reaches beyond the subnet through the gateway
	}{
		{PolicyInOut, true, true, true},
		{PolicyOut, false, true, true},
		{PolicyBlock, false, false, false},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			t.Parallel()
			b := newFenceBed(t)
			vm := &fakeVM{name: "vm", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
			f, _ := b.setupFence(t, tc.policy, vm)
			vm.configure(t)
			serveIdentity(t, vm.ns, "vm", vm.internal)
			serveIdentity(t, b.hostNS, "host", bedHost)
			serveIdentity(t, b.daemonNS, "beyond", bedBeyond)

			got, err := dialFrom(b.hostNS, vm.external)
			if tc.wantIn {
				if err != nil || got != "vm saw 10.99.0.20" {
					t.Errorf("host -> external: %q, %v; want the VM to see the host's own address", got, err)
				}
			} else if err == nil {
				t.Errorf("host -> external got through: %q", got)
			}
			got, err = dialFrom(vm.ns, bedHost)
			if tc.wantOut {
				if err != nil || got != "host saw 10.99.0.50" {
					t.Errorf("vm -> host: %q, %v; want the host to see the external address", got, err)
				}
			} else if err == nil {
				t.Errorf("vm -> host got through: %q", got)
			}
			got, err = dialFrom(vm.ns, bedBeyond)
			if tc.wantOutsider {
				if err != nil || got != "beyond saw 10.99.0.50" {
					t.Errorf("vm -> beyond the subnet: %q, %v", got, err)
				}
			} else if err == nil {
				t.Errorf("vm -> beyond the subnet got through: %q", got)
			}
			// Whatever the policy, the internal address is not reachable
			// from outside, and the fence never answers for the gateway.
			if got, err := dialFrom(b.hostNS, vm.internal); err == nil {
				t.Errorf("host -> internal address got through: %q", got)
			}
			assertGatewayNotStolen(t, b, f)
		})
	}
}

// assertGatewayNotStolen checks, with ARP from the outside host, that only
// the outside bridge answers for the gateway (the fence carries that
// address too, inside), that each fence answers for its external addresses
// and that nobody answers for an internal address.
func assertGatewayNotStolen(t *testing.T, b *fenceBed, fences ...*Fence) {
	t.Helper()
	if got, want := arpReplies(t, b, bedGateway), stableMAC(b.outsideBr).String(); got != want {
		t.Errorf("ARP replies for the gateway: %q, want only the outside bridge %s", got, want)
	}
	for _, f := range fences {
		n := f.spec.Networks[0]
		for _, m := range n.Mappings {
			if got, want := arpReplies(t, b, m.External), stableMAC("fence/"+f.spec.ID+"/"+n.Name).String(); got != want {
				t.Errorf("ARP replies for external %s: %q, want only its fence %s", m.External, got, want)
			}
			if got := arpReplies(t, b, m.Internal); got != "" {
				t.Errorf("ARP replies for internal %s: %q, want none", m.Internal, got)
			}
		}
	}
}

// arpReplies sends ARP requests for ip from the outside host and returns
// the distinct MACs that answered, sorted, space-separated.
func arpReplies(t *testing.T, b *fenceBed, ip netip.Addr) string {
	t.Helper()
	bb := requireBusybox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", b.hostName, bb, "arping", "-b", "-c", "1", "-w", "1",
		"-I", b.hostIf, ip.String()).CombinedOutput()
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		// "Unicast reply from 10.99.0.1 [02:..:..]  0.05ms"
		if i, j := strings.Index(line, "["), strings.Index(line, "]"); strings.Contains(line, "reply from") && i >= 0 && j > i {
			seen[strings.ToLower(line[i+1:j])] = true
		}
	}
	macs := slices.Sorted(maps.Keys(seen))
	return strings.Join(macs, " ")
}

// Two fences whose VMs have the same internal address (a configuration and
// its clone) run side by side; each is reached through its own external
// address, and each VM gets its address by DHCP inside its fence.
func TestTwoFencesSameInternalIPs(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	b := newFenceBed(t)
	internal := netip.MustParseAddr("10.99.0.10")
	vmA := &fakeVM{name: "A", mac: randomMAC(), internal: internal, external: netip.MustParseAddr("10.99.0.50")}
	vmB := &fakeVM{name: "B", mac: randomMAC(), internal: internal, external: netip.MustParseAddr("10.99.0.51")}
	fA, _ := b.setupFence(t, PolicyInOut, vmA)
	fB, _ := b.setupFence(t, PolicyInOut, vmB)
	for _, vm := range []*fakeVM{vmA, vmB} {
		if _, err := os.Stat("/usr/bin/busybox"); err == nil {
			lease, err := runUDHCPC(t, vm.nsName, vm.ifname, "-C", "-x", "0x3d:01aabbccddeeff")
			if err != nil {
				t.Fatalf("VM %s: DHCP inside the fence: %v", vm.name, err)
			}
			if lease["ip"] != "10.99.0.10" || lease["router"] != "10.99.0.1" || lease["subnet"] != "255.255.255.0" {
				t.Errorf("VM %s: DHCP lease %v, want 10.99.0.10/24 via 10.99.0.1", vm.name, lease)
			}
		}
		vm.configure(t)
		serveIdentity(t, vm.ns, vm.name, vm.internal)
	}
	serveIdentity(t, b.hostNS, "host", bedHost)

	for _, vm := range []*fakeVM{vmA, vmB} {
		if got, err := dialFrom(b.hostNS, vm.external); err != nil || got != vm.name+" saw 10.99.0.20" {
			t.Errorf("host -> %s (%s): %q, %v", vm.external, vm.name, got, err)
		}
		want := "host saw " + vm.external.String()
		if got, err := dialFrom(vm.ns, bedHost); err != nil || got != want {
			t.Errorf("VM %s -> host: %q, %v; want %q", vm.name, got, err, want)
		}
	}
	// The lab host, at the gateway address both fences also carry inside,
	// reaches each VM, and each VM reaches it as its own external address.
	serveIdentity(t, b.daemonNS, "labhost", bedGateway)
	for _, vm := range []*fakeVM{vmA, vmB} {
		if got, err := dialFrom(b.daemonNS, vm.external); err != nil || got != vm.name+" saw 10.99.0.1" {
			t.Errorf("lab host -> %s (%s): %q, %v", vm.external, vm.name, got, err)
		}
		want := "labhost saw " + vm.external.String()
		if got, err := dialFrom(vm.ns, bedGateway); err != nil || got != want {
			t.Errorf("VM %s -> lab host at the gateway: %q, %v; want %q", vm.name, got, err, want)
		}
	}
	// Fence to fence, through the outside: A reaches B by B's external address.
	if got, err := dialFrom(vmA.ns, vmB.external); err != nil || got != "B saw 10.99.0.50" {
		t.Errorf("A -> B's external address: %q, %v", got, err)
	}
	assertGatewayNotStolen(t, b, fA, fB)
}

func TestFenceTeardownLeavesNothing(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	ctx := context.Background()
	b := newFenceBed(t)
	vm := &fakeVM{mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	spec := b.spec(PolicyInOut, vm)
	f, err := Setup(ctx, b.daemonNS, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(ctx, b.daemonNS, spec, nil) })
	before := linkNames(t, b.daemonNS)
	if !strings.Contains(before, fenceOutPrefix) {
		t.Fatalf("no outside veth after Setup: %s", before)
	}
	dhcp, err := f.DHCP(b.network)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := f.Teardown(ctx); err != nil {
			t.Fatalf("Teardown #%d: %v", i, err)
		}
	}
	assertNoFence(t, b, spec)
	select {
	case <-dhcp.done:
	default:
		t.Error("inside DHCP server still serving after Teardown")
	}
}

func assertNoFence(t *testing.T, b *fenceBed, spec FenceSpec) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(namedNSDir, NamespaceName(spec.ID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fence namespace still there (%v)", err)
	}
	if links := linkNames(t, b.daemonNS); strings.Contains(links, fenceOutPrefix) {
		t.Errorf("outside veth left in the daemon namespace: %s", links)
	}
}

func linkNames(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	links, err := mustNetlink(t, ns).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return strings.Join(names, " ")
}

// Every step of Setup can fail; each failure leaves nothing behind.
func TestFenceSetupRollsBack(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	b := newFenceBed(t)
	ctx := context.Background()
	steps := []string{"namespace", "sysctl", "network " + b.network, "return rules", "nftables", "dhcp", "done"}
	for _, step := range steps {
		vm := &fakeVM{mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
		spec := b.spec(PolicyInOut, vm)
		t.Cleanup(func() { _ = Remove(ctx, b.daemonNS, spec, nil) })
		injected := errors.New("injected at " + step)
		_, err := setup(ctx, b.daemonNS, spec, nil, &setupHooks{failAt: func(s string) error {
			if s == step {
				return injected
			}
			return nil
		}})
		if !errors.Is(err, injected) {
			t.Errorf("step %q: Setup = %v, want the injected error", step, err)
		}
		assertNoFence(t, b, spec)
	}
	// A real failure: the outside bridge does not exist.
	spec := b.spec(PolicyInOut)
	spec.Networks[0].OutsideBridge = "sh-br-missing"
	t.Cleanup(func() { _ = Remove(ctx, b.daemonNS, spec, nil) })
	if _, err := Setup(ctx, b.daemonNS, spec, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Setup with a missing outside bridge = %v, want not found", err)
	}
	assertNoFence(t, b, spec)
}

func TestFenceSetupTwiceIsConflict(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	b := newFenceBed(t)
	vm := &fakeVM{mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	_, spec := b.setupFence(t, PolicyInOut, vm)
	if _, err := Setup(context.Background(), b.daemonNS, spec, nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second Setup = %v, want conflict", err)
	}
	// The failed Setup did not harm the first fence.
	if _, err := os.Lstat(filepath.Join(namedNSDir, NamespaceName(spec.ID))); err != nil {
		t.Errorf("first fence's namespace gone: %v", err)
	}
}

// After a daemon restart, Adopt takes the fence over with its VMs still
// plugged in, and serves DHCP again.
func TestFenceAdopt(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	ctx := context.Background()
	b := newFenceBed(t)
	vm := &fakeVM{name: "vm", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	old, spec := b.setupFence(t, PolicyInOut, vm)
	vm.configure(t)
	serveIdentity(t, vm.ns, "vm", vm.internal)
	// The old daemon dies: its DHCP servers and handles are gone, the
	// namespace stays.
	old.stopDHCP()

	if _, err := Adopt(ctx, b.daemonNS, FenceSpec{ID: "t" + randHex(10), Networks: spec.Networks}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Adopt of an unknown fence = %v, want not found", err)
	}
	// The fence was left by a daemon that did no return routing: the
	// local table first, no return rules or table, no marks.
	fh := mustNetlink(t, old.Namespace())
	rules := ipRules(t, old)
	if want := "100:fwmark 0x53480001 lookup 1000 200:lookup local 32766:lookup main 32767:lookup default"; rules != want {
		t.Errorf("fence rules after Setup: %q, want %q", rules, want)
	}
	table := returnRoutes(t, old)
	if want := "default via 169.254.0.1 dev " + insideLinkName(b.network) + " src 10.99.0.50 onlink|" +
		"10.99.0.0/24 dev " + insideLinkName(b.network) + " scope link src 10.99.0.50"; table != want {
		t.Errorf("return table after Setup: %q, want %q", table, want)
	}
	local := netlink.NewRule()
	local.Family, local.Priority, local.Table = netlink.FAMILY_V4, 0, 255
	if err := fh.RuleAdd(local); err != nil {
		t.Fatal(err)
	}
	for _, pref := range []int{100, 200} {
		r := netlink.NewRule()
		r.Family, r.Priority = netlink.FAMILY_V4, pref
		if err := fh.RuleDel(r); err != nil {
			t.Fatalf("delete rule %d: %v", pref, err)
		}
	}
	if out, err := exec.Command("ip", "-n", NamespaceName(spec.ID), "route", "flush", "table", fmt.Sprint(returnTable(0))).CombinedOutput(); err != nil {
		t.Fatalf("flush the return table: %v\n%s", err, out)
	}
	if err := deleteRuleset(old.Namespace()); err != nil {
		t.Fatal(err)
	}
	serveIdentity(t, b.daemonNS, "labhost", bedGateway)
	if got, err := dialFrom(b.daemonNS, vm.external); err == nil {
		t.Fatalf("lab host reached the VM in a fence without return routing: %q", got)
	}

	f, err := Adopt(ctx, b.daemonNS, spec, nil)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if got := ipRules(t, f); got != rules {
		t.Errorf("fence rules after Adopt: %q, want %q", got, rules)
	}
	if got, err := dialFrom(b.hostNS, vm.external); err != nil || got != "vm saw 10.99.0.20" {
		t.Errorf("after Adopt, host -> VM: %q, %v", got, err)
	}
	if got, err := dialFrom(b.daemonNS, vm.external); err != nil || got != "vm saw 10.99.0.1" {
		t.Errorf("after Adopt, lab host -> VM: %q, %v", got, err)
	}
	if got, err := dialFrom(vm.ns, bedGateway); err != nil || got != "labhost saw 10.99.0.50" {
		t.Errorf("after Adopt, VM -> lab host at the gateway: %q, %v", got, err)
	}
	// Adopting again changes nothing.
	if err := f.ensure(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := ipRules(t, f); got != rules {
		t.Errorf("fence rules after a second ensure: %q, want %q", got, rules)
	}
	if got := returnRoutes(t, f); got != table {
		t.Errorf("return table after Adopt and ensure: %q, want %q", got, table)
	}
	if _, err := os.Stat("/usr/bin/busybox"); err == nil {
		if lease, err := runUDHCPC(t, vm.nsName, vm.ifname); err != nil || lease["ip"] != "10.99.0.10" {
			t.Errorf("after Adopt, DHCP inside: %v, %v", lease, err)
		}
	}
	if err := f.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoFence(t, b, spec)
}

func TestCheckSpec(t *testing.T) {
	t.Parallel()
	good := func() FenceSpec {
		return FenceSpec{ID: "cfg-1", Networks: []FenceNetwork{{
			Name: "lab", OutsideBridge: "sh-br-lab", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1"),
			Mappings: []Mapping{
				{Internal: netip.MustParseAddr("10.1.0.10"), External: netip.MustParseAddr("10.1.0.50"), MAC: "02:00:00:00:00:01"},
				{Internal: netip.MustParseAddr("10.1.0.11"), External: netip.MustParseAddr("10.1.0.51")},
			},
		}}}
	}
	spec, err := checkSpec(good())
	if err != nil {
		t.Fatal(err)
	}
	if spec.Policy != PolicyInOut {
		t.Errorf("default policy = %q", spec.Policy)
	}
	for name, mutate := range map[string]func(*FenceSpec){
		"bad id":                 func(s *FenceSpec) { s.ID = "a/b" },
		"empty id":               func(s *FenceSpec) { s.ID = "" },
		"bad policy":             func(s *FenceSpec) { s.Policy = "open" },
		"no networks":            func(s *FenceSpec) { s.Networks = nil },
		"gateway outside subnet": func(s *FenceSpec) { s.Networks[0].Gateway = netip.MustParseAddr("10.2.0.1") },
		"internal is gateway":    func(s *FenceSpec) { s.Networks[0].Mappings[0].Internal = netip.MustParseAddr("10.1.0.1") },
		"external outside":       func(s *FenceSpec) { s.Networks[0].Mappings[0].External = netip.MustParseAddr("10.2.0.50") },
		"internal twice":         func(s *FenceSpec) { s.Networks[0].Mappings[1].Internal = netip.MustParseAddr("10.1.0.10") },
		"external twice":         func(s *FenceSpec) { s.Networks[0].Mappings[1].External = netip.MustParseAddr("10.1.0.50") },
		"external is internal":   func(s *FenceSpec) { s.Networks[0].Mappings[1].External = netip.MustParseAddr("10.1.0.10") },
		"bad MAC":                func(s *FenceSpec) { s.Networks[0].Mappings[1].MAC = "zz" },
		"MAC twice":              func(s *FenceSpec) { s.Networks[0].Mappings[1].MAC = "02:00:00:00:00:01" },
		"long bridge name":       func(s *FenceSpec) { s.Networks[0].OutsideBridge = "a-very-long-bridge" },
		"overlapping networks": func(s *FenceSpec) {
			n := s.Networks[0]
			n.Name, n.Mappings = "other", nil
			s.Networks = append(s.Networks, n)
		},
	} {
		s := good()
		mutate(&s)
		if _, err := checkSpec(s); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: checkSpec = %v, want invalid", name, err)
		}
	}
}

// A configuration on two networks: one fence, two inside bridges, two
// veths; VMs reach each other inside across networks through the fence's
// router, and each is reached from outside on its own network.
func TestFenceTwoNetworks(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	ctx := context.Background()
	b := newFenceBed(t)
	net2 := "net-" + randHex(8)
	br2 := BridgeName(net2)
	subnet2, gw2 := netip.MustParsePrefix("10.97.0.0/24"), netip.MustParseAddr("10.97.0.1")
	if err := EnsureBridge(ctx, b.daemonNS, br2, netip.PrefixFrom(gw2, 24)); err != nil {
		t.Fatal(err)
	}
	vm1 := &fakeVM{name: "vm1", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	vm2 := &fakeVM{name: "vm2", mac: randomMAC(), internal: netip.MustParseAddr("10.97.0.10"), external: netip.MustParseAddr("10.97.0.50")}
	spec := b.spec(PolicyInOut, vm1)
	spec.Networks = append(spec.Networks, FenceNetwork{Name: net2, OutsideBridge: br2, Subnet: subnet2, Gateway: gw2,
		Mappings: []Mapping{{Internal: vm2.internal, External: vm2.external, MAC: vm2.mac}}})
	f, err := Setup(ctx, b.daemonNS, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Teardown(ctx); _ = Remove(ctx, b.daemonNS, spec, nil) })
	for _, x := range []struct {
		vm      *fakeVM
		network string
		gw      netip.Addr
	}{{vm1, b.network, bedGateway}, {vm2, net2, gw2}} {
		br, err := f.InsideBridge(x.network)
		if err != nil {
			t.Fatal(err)
		}
		x.vm.ns, x.vm.nsName = newTestNS(t)
		x.vm.ifname = addVeth(t, f.Namespace(), br, x.vm.ns, x.vm.mac)
		configureIP(t, x.vm.ns, x.vm.ifname, netip.PrefixFrom(x.vm.internal, 24), x.gw)
		serveIdentity(t, x.vm.ns, x.vm.name, x.vm.internal)
	}
	if got, err := dialFrom(vm2.ns, vm1.internal); err != nil || got != "vm1 saw 10.97.0.10" {
		t.Errorf("vm2 -> vm1 inside the fence: %q, %v", got, err)
	}
	if got, err := dialFrom(b.hostNS, vm1.external); err != nil || got != "vm1 saw 10.99.0.20" {
		t.Errorf("host -> vm1: %q, %v", got, err)
	}
	// The lab host holds both gateways: it reaches each VM from the
	// gateway of the VM's network, and from beyond the second network's
	// subnet, whose replies must leave through the second network's link
	// (the fence's default route goes out through the first).
	for _, x := range []struct {
		vm   *fakeVM
		from netip.Addr
	}{{vm1, bedGateway}, {vm2, gw2}, {vm2, bedBeyond}} {
		if got, err := dialFromAddr(b.daemonNS, x.from, x.vm.external); err != nil || got != x.vm.name+" saw "+x.from.String() {
			t.Errorf("lab host from %s -> %s: %q, %v", x.from, x.vm.name, got, err)
		}
	}
	serveIdentity(t, b.daemonNS, "labhost", gw2)
	if got, err := dialFrom(vm2.ns, gw2); err != nil || got != "labhost saw 10.97.0.50" {
		t.Errorf("vm2 -> lab host at its gateway: %q, %v", got, err)
	}
	if _, err := f.InsideBridge("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("InsideBridge of an unknown network = %v", err)
	}
	if err := f.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoFence(t, b, spec)
}

// The lab host holds the network's gateway address on its bridge (the
// daemon's namespace here), the same address every fence carries inside
// as its VMs' router. The host still reaches a fenced VM on its external
// address (in-out only), and a fenced VM reaches services on the host at
// the gateway address (out and in-out), seen there as its external one.
func TestFenceLabHostAtGateway(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	for _, tc := range []struct {
		policy   Policy
		hostToVM bool // the lab host reaches the VM on its external address
		vmToHost bool // the VM reaches a service on the gateway address
	}{
		{PolicyInOut, true, true},
		{PolicyOut, false, true},
		{PolicyBlock, false, false},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			t.Parallel()
			b := newFenceBed(t)
			vm := &fakeVM{name: "vm", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
			f, _ := b.setupFence(t, tc.policy, vm)
			vm.configure(t)
			serveIdentity(t, vm.ns, "vm", vm.internal)
			serveIdentity(t, b.daemonNS, "labhost", bedGateway)
			// The fence's own namespace still reaches its VMs from the
			// gateway address, whatever the policy (the replies to it
			// stay inside).
			if got, err := dialFrom(f.Namespace(), vm.internal); err != nil || got != "vm saw 10.99.0.1" {
				t.Errorf("fence namespace -> VM: %q, %v", got, err)
			}

			start := time.Now()
			got, err := dialFrom(b.daemonNS, vm.external)
			if tc.hostToVM {
				if err != nil || got != "vm saw 10.99.0.1" {
					t.Errorf("lab host -> external: %q, %v; want the VM to see the gateway address", got, err)
				}
			} else if err == nil {
				t.Errorf("lab host -> external got through: %q", got)
			}
			got, err = dialFrom(vm.ns, bedGateway)
			if tc.vmToHost {
				if err != nil || got != "labhost saw 10.99.0.50" {
					t.Errorf("vm -> lab host at the gateway: %q, %v; want the host to see the external address", got, err)
				}
			} else if err == nil {
				t.Errorf("vm -> lab host at the gateway got through: %q", got)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("the two attempts took %v; a refused one must fail within its dial timeout", d)
			}
			// The VM still reaches the outside host as before.
			serveIdentity(t, b.hostNS, "host", bedHost)
			if got, err := dialFrom(vm.ns, bedHost); (err == nil) != (tc.policy != PolicyBlock) {
				t.Errorf("vm -> outside host: %q, %v", got, err)
			}
			// DHCP at the gateway address stays the fence's own: a
			// renewal sent to it is answered inside.
			if reply, from, err := renewUnicast(vm, bedGateway); err != nil {
				t.Errorf("DHCP renewal to the gateway: %v", err)
			} else if reply.MessageType() != dhcpv4.MessageTypeAck || !reply.YourIPAddr.Equal(vm.internal.AsSlice()) || from != bedGateway {
				t.Errorf("DHCP renewal: %s for %s from %s, want ACK for %s from %s", reply.MessageType(), reply.YourIPAddr, from, vm.internal, bedGateway)
			}
		})
	}
}

// renewUnicast sends, from vm's namespace, a DHCPREQUEST in the RENEWING
// state (ciaddr set, unicast to server) and returns the reply and who sent
// it.
func renewUnicast(vm *fakeVM, server netip.Addr) (*dhcpv4.DHCPv4, netip.Addr, error) {
	hw, err := net.ParseMAC(vm.mac)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(vm.internal.AsSlice()))
	if err != nil {
		return nil, netip.Addr{}, err
	}
	var reply *dhcpv4.DHCPv4
	var from netip.Addr
	err = inNamespace(vm.ns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: vm.internal.AsSlice(), Port: dhcpv4.ClientPort})
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.WriteTo(req.ToBytes(), &net.UDPAddr{IP: server.AsSlice(), Port: dhcpv4.ServerPort}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		n, addr, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		from = addr.Addr().Unmap()
		reply, err = dhcpv4.FromBytes(buf[:n])
		return err
	})
	return reply, from, err
}

// dialFromAddr is dialFrom with the connection's local address chosen.
func dialFromAddr(ns netns.NsHandle, local, addr netip.Addr) (string, error) {
	var answer string
	err := inNamespace(ns, func() error {
		d := net.Dialer{Timeout: 1500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: local.AsSlice()}}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(addr, 8080).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		answer = string(b)
		return err
	})
	return answer, err
}

// ipRules lists the fence namespace's IPv4 rules as "PREF:SELECTOR lookup
// TABLE", in order, as `ip rule` shows them.
func ipRules(t *testing.T, f *Fence) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", NamespaceName(f.ID()), "-4", "rule", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip rule: %v\n%s", err, out)
	}
	var rules []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pref, rule, _ := strings.Cut(line, ":")
		rule = strings.TrimPrefix(strings.Join(strings.Fields(rule), " "), "from all ")
		rules = append(rules, pref+":"+rule)
	}
	return strings.Join(rules, " ")
}

// returnRoutes lists the routes of the fence's first return table, one
// per "|"-separated entry, as `ip route` shows them.
func returnRoutes(t *testing.T, f *Fence) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", NamespaceName(f.ID()), "-4", "route", "show", "table", fmt.Sprint(returnTable(0))).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v\n%s", err, out)
	}
	var routes []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		routes = append(routes, strings.Join(strings.Fields(line), " "))
	}
	return strings.Join(routes, "|")
}
