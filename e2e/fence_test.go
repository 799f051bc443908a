package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stagehand/internal/fence"
)

// attachClient joins a client namespace to a network's bridge in the
// daemon's namespace with a veth, and gives it addr (CIDR).
func attachClient(t *testing.T, daemonNS, client *netns, network, addr string) {
	t.Helper()
	bridge := fence.BridgeName(network)
	for _, argv := range [][]string{
		{"ip", "link", "add", "cl0", "netns", client.name, "type", "veth", "peer", "name", "cl-" + client.name[len(client.name)-6:], "netns", daemonNS.name},
		{"ip", "-n", daemonNS.name, "link", "set", "cl-" + client.name[len(client.name)-6:], "master", bridge, "up"},
		{"ip", "-n", client.name, "addr", "add", addr, "dev", "cl0"},
		{"ip", "-n", client.name, "link", "set", "cl0", "up"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
}

// serveHTTP runs busybox httpd on port 8080 in ns, answering "client-ok".
func serveHTTP(t *testing.T, ns *netns) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("client-ok\n"), 0o644)
	argv := ns.exec("busybox", "httpd", "-f", "-p", "8080", "-h", dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("busybox httpd: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// canOpen reports whether a TCP connection from ns to ip:80 succeeds.
func canOpen(ns *netns, ip string) bool {
	_, err := ns.guest(ip, "/")
	return err == nil
}

// The source page's scenario: the original and its clones running side by
// side, the original unfenced and the clones fenced, then change-ips.
func TestFencedClonesRunBesideTheOriginal(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	guest := guestImages(t)
	ns := newNetns(t)
	client := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.80.0.0/24", "10.80.0.10-10.80.0.60")
	d.ok("config", "create", "orig", "--vm", "a=kguest,net=lan", "--vm", "b=kguest,net=lan")

	// 1. Unfenced, from a client namespace on the network.
	d.ok("config", "deploy", "orig")
	attachClient(t, ns, client, "lan", "10.80.0.200/24")
	serveHTTP(t, client)
	orig := d.config("orig")
	ips := ipsOf(orig)
	for _, ip := range ips {
		client.waitGuest(t, ip, 90*time.Second)
	}

	// 2. Clones; an unfenced deploy beside the original is refused.
	d.ok("config", "undeploy", "orig")
	d.ok("config", "clone", "orig", "linked")
	d.ok("config", "clone", "orig", "full", "--mode", "full")
	d.ok("config", "deploy", "orig")
	r := d.run("config", "deploy", "linked")
	if r.code != 4 || !strings.Contains(r.stderr, ips[0]) || !strings.Contains(r.stderr, ips[1]) || !strings.Contains(r.stderr, "--fenced") {
		t.Errorf("unfenced deploy of the clone: exit %d, %q; want a conflict naming %v and suggesting --fenced", r.code, r.stderr, ips)
	}
	if st := d.config("linked").State; st != "undeployed" {
		t.Errorf("refused deploy left state %s", st)
	}

	// 3. Both clones fenced, all three running at once.
	d.ok("config", "deploy", "linked", "--fenced", "--fence-policy", "in-out")
	d.ok("config", "deploy", "full", "--fenced")
	seen := map[string]string{}
	for _, name := range []string{"linked", "full"} {
		c := d.config(name)
		if !c.Fenced || c.State != "deployed" {
			t.Fatalf("%s: fenced=%v state=%s", name, c.Fenced, c.State)
		}
		for i, vm := range c.VMs {
			nic := vm.NICs[0]
			if nic.IP != ips[i] || nic.ExternalIP == "" || nic.ExternalIP == nic.IP {
				t.Errorf("%s/%s: ip %s external %s; want internal %s and a new external", name, vm.Name, nic.IP, nic.ExternalIP, ips[i])
			}
			if other, dup := seen[nic.ExternalIP]; dup {
				t.Errorf("external %s given to %s and %s/%s", nic.ExternalIP, other, name, vm.Name)
			}
			seen[nic.ExternalIP] = name + "/" + vm.Name
			kv := client.waitGuest(t, nic.ExternalIP, 90*time.Second)
			if !strings.Contains(kv["ip"], ips[i]) {
				t.Errorf("%s/%s on %s reports ip %q, want its internal %s", name, vm.Name, nic.ExternalIP, kv["ip"], ips[i])
			}
		}
	}
	if r := d.run("doctor"); r.code != 0 { // external addresses are all mapped
		t.Errorf("doctor with fenced deployments: %s%s", r.stdout, r.stderr)
	}
	for _, ip := range ips { // the original still answers on its own addresses
		if kv, err := client.guest(ip, "/"); err != nil || !strings.Contains(kv["ip"], ip) {
			t.Errorf("original at %s: %v %v", ip, kv, err)
		}
	}

	// 4. Inside a fence the two VMs reach each other on internal addresses.
	linked := d.config("linked")
	if kv, err := client.guest(linked.VMs[0].NICs[0].ExternalIP, "/fetch?url=http://"+ips[1]+"/"); err != nil || kv["fetch"] != "ok" || !strings.Contains(kv["ip"], ips[1]) {
		t.Errorf("inside the fence a cannot reach b at %s: %v %v", ips[1], kv, err)
	}
	// And an in-out fenced VM reaches the client.
	if kv, err := client.guest(linked.VMs[0].NICs[0].ExternalIP, "/fetch?url=http://10.80.0.200:8080/"); err != nil || kv["fetch"] != "ok" {
		t.Errorf("in-out fenced VM cannot reach the client: %v %v", kv, err)
	}

	// A daemon killed with fences up re-adopts them with their VMs:
	// nothing is torn down, the same QEMUs answer on the same addresses.
	pidBefore := vmPID(t, d, "linked", 0)
	d.kill()
	d = startDaemonIn(t, ns, data)
	if pid := vmPID(t, d, "linked", 0); pid != pidBefore {
		t.Errorf("fenced VM's PID %d → %d across the daemon restart", pidBefore, pid)
	}
	if kv, err := client.guest(linked.VMs[0].NICs[0].ExternalIP, "/"); err != nil || !strings.Contains(kv["ip"], ips[0]) {
		t.Errorf("fenced VM after the daemon restart: %v %v", kv, err)
	}

	// 5. Policies: out, then block. The outbound direction is driven from
	// inside the fence: its namespace routes to the VMs' internal
	// addresses, and the guest's /fetch opens a connection to the client.
	for _, c := range []struct {
		policy  string
		outOK   bool
		inbound bool
	}{{"out", true, false}, {"block", false, false}} {
		d.ok("config", "undeploy", "full")
		d.ok("config", "deploy", "full", "--fenced", "--fence-policy", c.policy)
		full := d.config("full")
		// The fenced VM's QEMU runs in the fence's namespace: enter it
		// through the process (the namespace's name is bound in the
		// daemon's own mount namespace, which `ip netns exec` made).
		fns := &netns{pid: vmPID(t, d, "full", 0)}
		internal, ext := full.VMs[0].NICs[0].IP, full.VMs[0].NICs[0].ExternalIP
		fns.waitGuest(t, internal, 90*time.Second)
		kv, err := fns.guest(internal, "/fetch?url=http://10.80.0.200:8080/")
		if err != nil || (kv["fetch"] == "ok") != c.outOK {
			t.Errorf("policy %s: VM → client fetch=%q (%v), want ok=%v", c.policy, kv["fetch"], err, c.outOK)
		}
		if canOpen(client, ext) != c.inbound {
			t.Errorf("policy %s: client → %s opened=%v, want %v", c.policy, ext, !c.inbound, c.inbound)
		}
	}

	// 6. Redeploy: new external addresses, the old ones back in the pool.
	before := d.config("linked")
	d.ok("config", "undeploy", "linked")
	var nw struct {
		Usage []struct {
			IP   string `json:"ip"`
			Kind string `json:"kind"`
		} `json:"usage"`
	}
	d.json(&nw, "network", "show", "lan")
	for _, u := range nw.Usage {
		for _, vm := range before.VMs {
			if u.IP == vm.NICs[0].ExternalIP {
				t.Errorf("external %s still held after undeploy", u.IP)
			}
		}
	}
	d.ok("config", "deploy", "linked", "--fenced")
	after := d.config("linked")
	for i := range after.VMs {
		if after.VMs[i].NICs[0].ExternalIP == before.VMs[i].NICs[0].ExternalIP {
			t.Errorf("redeploy kept external %s", after.VMs[i].NICs[0].ExternalIP)
		}
	}

	// 7. change-ips: the clone then deploys unfenced beside the original.
	d.ok("config", "undeploy", "linked")
	d.ok("config", "undeploy", "full")
	d.ok("config", "change-ips", "linked")
	changed := d.config("linked")
	for i, vm := range changed.VMs {
		if vm.NICs[0].IP == ips[i] {
			t.Errorf("change-ips kept %s", ips[i])
		}
	}
	d.ok("config", "deploy", "linked")
	for _, ip := range ipsOf(changed) {
		client.waitGuest(t, ip, 90*time.Second)
	}
	d.ok("config", "undeploy", "linked")
	d.ok("config", "undeploy", "orig")

	// 8. The internal addresses return only when the last holder is gone.
	held := func(ip string) bool {
		d.json(&nw, "network", "show", "lan")
		for _, u := range nw.Usage {
			if u.IP == ip {
				return true
			}
		}
		return false
	}
	d.ok("config", "delete", "orig")
	if !held(ips[0]) {
		t.Errorf("%s released while the full clone still carries it", ips[0])
	}
	d.ok("config", "delete", "full")
	if held(ips[0]) {
		t.Errorf("%s still held after its last carrier was deleted", ips[0])
	}
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
}

// vmPID returns the QEMU PID of VM i of a configuration.
func vmPID(t *testing.T, d *daemon, config string, i int) int {
	t.Helper()
	var c struct {
		VMs []struct {
			PID int `json:"pid"`
		} `json:"vms"`
	}
	d.json(&c, "config", "show", config)
	if i >= len(c.VMs) || c.VMs[i].PID == 0 {
		t.Fatalf("%s: VM %d has no PID: %+v", config, i, c.VMs)
	}
	return c.VMs[i].PID
}

// TestFencedDeployFailureLeavesNothing: the pool cannot give the third
// external address, so the fenced deploy is refused and nothing is held or
// set up.
func TestFencedDeployFailureLeavesNothing(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	d := startDaemonIn(t, ns, t.TempDir())
	deployFixture(t, d, guest, "10.81.0.0/24", "10.81.0.10-10.81.0.14")
	d.ok("config", "create", "three", "--vm", "a=kguest,net=lan", "--vm", "b=kguest,net=lan", "--vm", "c=kguest,net=lan")
	// 3 of 5 pool addresses are held: a fenced deploy needs 3 more.
	d.fails(4, "exhausted", "config", "deploy", "three", "--fenced")
	c := d.config("three")
	if c.State != "undeployed" || c.Fenced {
		t.Errorf("after the refused deploy: state %s fenced %v", c.State, c.Fenced)
	}
	var nw struct {
		Usage []struct {
			Kind string `json:"kind"`
		} `json:"usage"`
	}
	d.json(&nw, "network", "show", "lan")
	for _, u := range nw.Usage {
		if u.Kind != "internal" {
			t.Errorf("an external address is still held: %+v", nw.Usage)
		}
	}
	out, _ := exec.Command("ip", "-n", ns.name, "-o", "link").Output()
	if strings.Contains(string(out), "sh-fo-") || strings.Contains(string(out), "sh-tap-") {
		t.Errorf("fence veths or taps left:\n%s", out)
	}
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU left: %v", pids)
	}
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
}
