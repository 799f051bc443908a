package fence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

func TestParseAllow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    AllowRule
		wantErr string // part of the message; "" for success
	}{
		{in: "192.0.2.0/24", want: AllowRule{Prefix: netip.MustParsePrefix("192.0.2.0/24")}},
		{in: "192.0.2.7", want: AllowRule{Prefix: netip.MustParsePrefix("192.0.2.7/32")}},
		{in: "0.0.0.0/0:53/udp", want: AllowRule{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 53, Proto: "udp"}},
		{in: "10.1.0.0/16:443/tcp", want: AllowRule{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: 443, Proto: "tcp"}},
		{in: "10.1.2.3:8080", want: AllowRule{Prefix: netip.MustParsePrefix("10.1.2.3/32"), Port: 8080}},
		{in: "10.1.2.3:65535/tcp", want: AllowRule{Prefix: netip.MustParsePrefix("10.1.2.3/32"), Port: 65535, Proto: "tcp"}},
		{in: "10.1.2.3/24", wantErr: "host bits set; the network is 10.1.2.0/24"},
		{in: "10.1.2.0/33", wantErr: "not a network in CIDR form"},
		{in: "example.com", wantErr: "not an IPv4 address or network"},
		{in: "", wantErr: "not an IPv4 address"},
		{in: "2001:db8::/32", wantErr: "not an IPv4 address or network"},
		{in: "::1", wantErr: "not an IPv4 address or network"},
		{in: "10.1.2.3:0", wantErr: "port 0 is out of range 1-65535"},
		{in: "10.1.2.3:65536/udp", wantErr: "port 65536 is out of range"},
		{in: "10.1.2.3:http", wantErr: `port "http" is not a number`},
		{in: "10.1.2.3:80/sctp", wantErr: `protocol "sctp": want tcp or udp`},
		{in: "10.1.2.3:80/", wantErr: `protocol "": want tcp or udp`},
	} {
		got, err := ParseAllow(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("ParseAllow(%q) = %v, %v; want an invalid error containing %q", tc.in, got, err, tc.wantErr)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
				t.Errorf("ParseAllow(%q): %v does not name the entry", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAllow(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		// The canonical form reads back to the same rule.
		if back, err := ParseAllow(got.String()); err != nil || back != got {
			t.Errorf("ParseAllow(%q).String() = %q reads back as %v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestParseAllowList(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxAllow+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.0/24", i)
	}
	if _, err := ParseAllowList(many[:MaxAllow]); err != nil {
		t.Errorf("%d entries: %v", MaxAllow, err)
	}
	if _, err := ParseAllowList(many); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("at most %d", MaxAllow)) {
		t.Errorf("%d entries: %v; want invalid naming the limit", len(many), err)
	}
	if _, err := ParseAllowList([]string{"10.0.0.1:80/tcp", "10.0.0.1/32:80/tcp"}); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("a repeated entry: %v; want invalid, listed twice", err)
	}
	rules, err := ParseAllowList([]string{"10.0.0.1:80/tcp", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatAllowList(rules); got != "10.0.0.1/32:80/tcp,192.0.2.0/24" {
		t.Errorf("FormatAllowList = %q", got)
	}
	// With block the list conflicts; the spec check refuses it too.
	if err := CheckAllow(PolicyBlock, rules); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "block") {
		t.Errorf("CheckAllow(block) = %v; want invalid naming block", err)
	}
	for _, p := range []Policy{PolicyOut, PolicyInOut} {
		if err := CheckAllow(p, rules); err != nil {
			t.Errorf("CheckAllow(%s) = %v", p, err)
		}
	}
	spec := FenceSpec{ID: "t1", Policy: PolicyBlock, Allow: rules, Networks: []FenceNetwork{{Name: "n", OutsideBridge: "br0",
		Subnet: bedSubnet, Gateway: bedGateway}}}
	if _, err := checkSpec(spec); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "block") {
		t.Errorf("checkSpec(block + allow) = %v; want invalid", err)
	}
	spec.Allow = []AllowRule{{Prefix: netip.MustParsePrefix("10.0.0.1/24")}}
	spec.Policy = PolicyOut
	if _, err := checkSpec(spec); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("checkSpec(allow with host bits) = %v; want invalid", err)
	}
}

// serveOn listens on addr:port inside ns; it answers each connection
// with "name saw REMOTE-IP" and closes it.
func serveOn(t *testing.T, ns netns.NsHandle, name string, addr netip.Addr, port uint16) {
	t.Helper()
	var ln net.Listener
	if err := inNamespace(ns, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(addr, port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s saw %s", name, host)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// dialPort connects from inside ns to addr:port and returns the answer.
func dialPort(ns netns.NsHandle, addr netip.Addr, port uint16) (string, error) {
	var answer string
	err := inNamespace(ns, func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, port).String(), 1500*time.Millisecond)
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

// nftTable lists the fence's table with the counter's value blanked, to
// compare rule sets.
func nftTable(t *testing.T, spec FenceSpec) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", NamespaceName(spec.ID), "nft", "list", "table", "ip", natTableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	return regexp.MustCompile(`packets \d+ bytes \d+`).ReplaceAllString(string(out), "packets N bytes N")
}

func TestFenceEgressAllowList(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed")
	}
	for _, policy := range []Policy{PolicyOut, PolicyInOut} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			b := newFenceBed(t)
			vm := &fakeVM{name: "vm", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
			spec := b.spec(policy, vm)
			spec.Allow = []AllowRule{{Prefix: netip.PrefixFrom(bedHost, 32), Port: 8080, Proto: ProtoTCP}}
			f, err := Setup(ctx, b.daemonNS, spec, nil)
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			t.Cleanup(func() {
				_ = f.Teardown(context.Background())
				_ = Remove(context.Background(), b.daemonNS, spec, nil)
			})
			br, _ := f.InsideBridge(b.network)
			vm.ns, vm.nsName = newTestNS(t)
			vm.ifname = addVeth(t, f.Namespace(), br, vm.ns, vm.mac)
			vm.configure(t)
			serveIdentity(t, b.hostNS, "host", bedHost)
			serveOn(t, b.hostNS, "host-8081", bedHost, 8081)
			serveIdentity(t, b.daemonNS, "beyond", bedBeyond)
			serveIdentity(t, vm.ns, "vm", vm.internal)

			if n, err := f.EgressRefused(); err != nil || n != 0 {
				t.Fatalf("refused before any traffic: %d, %v", n, err)
			}
			// The listed destination: the connection opens, and the
			// answer (established, the other way) comes back.
			if got, err := dialFrom(vm.ns, bedHost); err != nil || got != "host saw 10.99.0.50" {
				t.Errorf("vm -> allowed %s:8080: %q, %v", bedHost, got, err)
			}
			// Not listed: another port of the same host, a host beyond
			// the subnet, the lab host at the gateway. Each is refused at
			// once (a reset), and counted once.
			refusedAttempts := 0
			for _, d := range []struct {
				addr netip.Addr
				port uint16
			}{{bedHost, 8081}, {bedBeyond, 8080}, {bedBeyond, 8080}, {bedGateway, 8080}} {
				start := time.Now()
				got, err := dialPort(vm.ns, d.addr, d.port)
				if err == nil {
					t.Errorf("vm -> %s:%d got through: %q", d.addr, d.port, got)
					continue
				}
				if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
					t.Errorf("vm -> %s:%d: %v after %v; want refused at once", d.addr, d.port, err, time.Since(start))
				}
				refusedAttempts++
			}
			if n, err := f.EgressRefused(); err != nil || n != uint64(refusedAttempts) {
				t.Errorf("refused count = %d, %v; want %d (one per attempt)", n, err, refusedAttempts)
			}
			// The allowed destination still works after the refusals.
			if got, err := dialFrom(vm.ns, bedHost); err != nil || got != "host saw 10.99.0.50" {
				t.Errorf("vm -> allowed again: %q, %v", got, err)
			}
			// Under in-out the allow-list restricts only what the VMs
			// open: a connection from outside is answered.
			got, err := dialFrom(b.hostNS, vm.external)
			if policy == PolicyInOut && (err != nil || got != "vm saw 10.99.0.20") {
				t.Errorf("host -> VM under in-out with an allow-list: %q, %v", got, err)
			}
			if policy == PolicyOut && err == nil {
				t.Errorf("host -> VM under out got through: %q", got)
			}

			// A restarted daemon adopts the fence: the same rules, and
			// the count goes on from where it was.
			rules := nftTable(t, spec)
			if !strings.Contains(rules, "counter "+egressCounterName) || !strings.Contains(rules, "jump "+egressChainName) {
				t.Errorf("the fence's table lacks the egress chain or counter:\n%s", rules)
			}
			f.stopDHCP()
			adopted, err := Adopt(ctx, b.daemonNS, spec, nil)
			if err != nil {
				t.Fatalf("Adopt: %v", err)
			}
			if got := nftTable(t, spec); got != rules {
				t.Errorf("table after Adopt:\n%s\nwant:\n%s", got, rules)
			}
			if n, err := adopted.EgressRefused(); err != nil || n != uint64(refusedAttempts) {
				t.Errorf("refused count after Adopt = %d, %v; want %d", n, err, refusedAttempts)
			}
			if _, err := dialPort(vm.ns, bedBeyond, 8080); err == nil {
				t.Errorf("after Adopt, vm -> beyond got through")
			}
			if n, _ := adopted.EgressRefused(); n != uint64(refusedAttempts+1) {
				t.Errorf("refused count after one more = %d, want %d", n, refusedAttempts+1)
			}
			if got, err := dialFrom(vm.ns, bedHost); err != nil || got != "host saw 10.99.0.50" {
				t.Errorf("after Adopt, vm -> allowed: %q, %v", got, err)
			}
			f = adopted
		})
	}
}

// A fence without an allow-list has no egress chain, and reads 0.
func TestFenceWithoutAllowListCountsNothing(t *testing.T) {
	t.Parallel()
	b := newFenceBed(t)
	vm := &fakeVM{name: "vm", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	f, _ := b.setupFence(t, PolicyOut, vm)
	vm.configure(t)
	serveIdentity(t, b.daemonNS, "beyond", bedBeyond)
	if got, err := dialFrom(vm.ns, bedBeyond); err != nil || got != "beyond saw 10.99.0.50" {
		t.Errorf("vm -> beyond without an allow-list: %q, %v", got, err)
	}
	if n, err := f.EgressRefused(); err != nil || n != 0 {
		t.Errorf("EgressRefused = %d, %v; want 0", n, err)
	}
}

// A daemon in a mount namespace of its own leaves its successor only the
// empty mount point of a fence's namespace; Adopt finds the namespace
// through a process in it (a fenced QEMU) and mounts it there again, with
// the allow-list's rules and count.
func TestFenceAdoptAfterItsMountWentAway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newFenceBed(t)
	vm := &fakeVM{name: "vm", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	spec := b.spec(PolicyOut, vm)
	spec.Allow = []AllowRule{{Prefix: netip.PrefixFrom(bedHost, 32)}}
	f, err := Setup(ctx, b.daemonNS, spec, nil)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = Remove(context.Background(), b.daemonNS, spec, nil) })
	// A process living in the fence, as its QEMUs do.
	holder := exec.Command("ip", "netns", "exec", NamespaceName(spec.ID), "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	time.Sleep(200 * time.Millisecond) // until ip has entered the namespace and exec'd sleep
	rules := nftTable(t, spec)

	// The old daemon is gone, and its mount with it: the file stays.
	f.stopDHCP()
	f.ns.Close()
	f.daemonNS.Close()
	path := filepath.Join(namedNSDir, NamespaceName(spec.ID))
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the mount point went too: %v", err)
	}

	adopted, err := Adopt(ctx, b.daemonNS, spec, nil)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	t.Cleanup(func() { _ = adopted.Teardown(context.Background()) })
	if !isNamespaceFile(int(adopted.Namespace())) {
		t.Errorf("the adopted fence's handle is not a namespace")
	}
	if got := nftTable(t, spec); got != rules {
		t.Errorf("table after Adopt:\n%s\nwant:\n%s", got, rules)
	}
	if _, err := adopted.EgressRefused(); err != nil {
		t.Errorf("EgressRefused after Adopt: %v", err)
	}
}
