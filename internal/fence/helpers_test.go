package fence

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Every test here works only inside network namespaces it creates itself,
// named sht-<random>, and removes them in t.Cleanup, failed or not.

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

// requireNetAdmin skips tests that need to create namespaces where that is
// impossible (not root, no CAP_SYS_ADMIN).
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

// newTestNS creates a throwaway named namespace and returns its handle and
// name; the namespace is deleted when the test ends.
func newTestNS(t *testing.T) (netns.NsHandle, string) {
	t.Helper()
	requireNetAdmin(t)
	name := "sht-" + randHex(10)
	h, err := createNamedNamespace(name)
	if err != nil {
		t.Fatalf("create test namespace: %v", err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := deleteNamedNamespace(name); err != nil {
			t.Errorf("delete test namespace %s: %v", name, err)
		}
	})
	// Loopback up, as a real namespace would have it.
	nl := mustNetlink(t, h)
	if lo, err := nl.LinkByName("lo"); err == nil {
		_ = nl.LinkSetUp(lo)
	}
	return h, name
}

func mustNetlink(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlinkAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// addVeth makes a veth pair: one end in ns attached to bridge, the other in
// peerNS with the given MAC and no address, both up. It returns the name
// of the peer end. Deleting either namespace deletes the pair.
func addVeth(t *testing.T, ns netns.NsHandle, bridge string, peerNS netns.NsHandle, peerMAC string) string {
	t.Helper()
	h := mustNetlink(t, ns)
	br, err := h.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(peerMAC)
	if err != nil {
		t.Fatal(err)
	}
	name, peer := "tv"+randHex(8), "tc"+randHex(8)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		PeerName:         peer,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(peerNS),
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	t.Cleanup(func() {
		if l, err := h.LinkByName(name); err == nil {
			_ = h.LinkDel(l)
		}
	})
	if l, err := h.LinkByName(name); err != nil || h.LinkSetUp(l) != nil {
		t.Fatalf("veth %s up: %v", name, err)
	}
	ph := mustNetlink(t, peerNS)
	pl, err := ph.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetUp(pl); err != nil {
		t.Fatal(err)
	}
	return peer
}

func requireBusybox(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install -y busybox-static)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	return bb
}

// dhcpLease is what udhcpc reported on "bound".
type dhcpLease map[string]string

// runUDHCPC runs busybox udhcpc once in namespace nsName on ifname and
// returns the lease it got, or an error when it got none. It only prints
// what it is given: the script configures nothing.
func runUDHCPC(t *testing.T, nsName, ifname string, extra ...string) (dhcpLease, error) {
	t.Helper()
	bb := requireBusybox(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	body := "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\n" +
		"echo \"ip=$ip\"; echo \"subnet=$subnet\"; echo \"router=$router\"; echo \"dns=$dns\"; echo \"lease=$lease\"; echo \"serverid=$serverid\"; echo \"mtu=$mtu\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"netns", "exec", nsName, bb, "udhcpc", "-i", ifname, "-q", "-n", "-f",
		"-t", "3", "-T", "1", "-A", "1", "-s", script}, extra...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	lease := dhcpLease{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.Contains(k, " ") {
			lease[k] = strings.TrimSpace(v)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("udhcpc: %v\n%s", err, out)
	}
	if lease["ip"] == "" {
		return nil, fmt.Errorf("udhcpc: no lease\n%s", out)
	}
	return lease, nil
}

// randomMAC returns a locally administered unicast MAC.
func randomMAC() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[0] = (b[0] | 0x02) &^ 0x01
	return net.HardwareAddr(b).String()
}
