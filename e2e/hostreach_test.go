package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveWho runs busybox httpd on port 8080 in ns; GET /cgi-bin/who answers
// "seen=ADDR", the address the connection came from.
func serveWho(t *testing.T, ns *netns) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "cgi-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"seen=$REMOTE_ADDR\"\n"
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "who"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := ns.exec("busybox", "httpd", "-f", "-p", "8080", "-h", dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("busybox httpd: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// seenAddr is the address a serveWho answer names, without the IPv6
// mapping busybox httpd reports IPv4 clients with ("[::ffff:10.0.0.1]").
func seenAddr(kv map[string]string) string {
	return strings.TrimSuffix(strings.TrimPrefix(kv["seen"], "[::ffff:"), "]")
}

// The lab host is where Stagehand runs: its bridge for a network holds the
// network's gateway address, which every fence of that network also
// carries inside as its VMs' router. Here the daemon runs in a namespace
// of its own, which plays the lab host: `curl http://EXTERNAL/` typed
// there reaches a fenced VM (in-out), and the VM reaches a service on the
// host at the gateway address, where it is seen as its external address.
func TestLabHostReachesFencedVM(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	const gateway = "10.77.0.1"
	guest := guestImages(t)
	ns := newNetns(t)
	client := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.77.0.0/24", "10.77.0.10-10.77.0.40")
	d.ok("config", "create", "web", "--vm", "a=kguest,net=lan")
	d.ok("config", "deploy", "web", "--fenced", "--fence-policy", "in-out")
	nic := d.config("web").VMs[0].NICs[0]
	if nic.ExternalIP == "" || nic.ExternalIP == nic.IP {
		t.Fatalf("fenced NIC: ip %s external %q", nic.IP, nic.ExternalIP)
	}

	// The lab host (the daemon's namespace) → the VM's external address.
	kv := ns.waitGuest(t, nic.ExternalIP, 90*time.Second)
	if !strings.Contains(kv["ip"], nic.IP) {
		t.Errorf("lab host → %s: the guest reports ip %q, want its internal %s", nic.ExternalIP, kv["ip"], nic.IP)
	}
	start := time.Now()
	if _, err := ns.guest(nic.ExternalIP, "/"); err != nil {
		t.Errorf("lab host → %s once the guest is up: %v", nic.ExternalIP, err)
	}
	t.Logf("lab host: curl http://%s/ answered in %v", nic.ExternalIP, time.Since(start).Round(time.Millisecond))
	// A client elsewhere on the network, as before.
	attachClient(t, ns, client, "lan", "10.77.0.2/24")
	if _, err := client.guest(nic.ExternalIP, "/"); err != nil {
		t.Errorf("client → %s: %v", nic.ExternalIP, err)
	}
	// The VM → a service on the lab host at the gateway address.
	serveWho(t, ns)
	fetchWho := "/fetch?url=http://" + gateway + ":8080/cgi-bin/who"
	kv, err := ns.guest(nic.ExternalIP, fetchWho)
	if err != nil || kv["fetch"] != "ok" || seenAddr(kv) != nic.ExternalIP {
		t.Errorf("VM → lab host at %s: %v %v; want fetch=ok, seen as %s", gateway, kv, err, nic.ExternalIP)
	}

	// A restarted daemon adopts the fence; both directions still work.
	d.kill()
	d = startDaemonIn(t, ns, data)
	ns.waitGuest(t, nic.ExternalIP, 20*time.Second)
	if kv, err := ns.guest(nic.ExternalIP, fetchWho); err != nil || kv["fetch"] != "ok" {
		t.Errorf("after the daemon restart, VM → lab host: %v %v", kv, err)
	}

	// out: the host cannot open a connection in, the VM still reaches
	// the host; block: neither. The VM is driven from inside its fence.
	for _, c := range []struct {
		policy string
		vmOut  bool
	}{{"out", true}, {"block", false}} {
		d.ok("config", "undeploy", "web")
		d.ok("config", "deploy", "web", "--fenced", "--fence-policy", c.policy)
		nic := d.config("web").VMs[0].NICs[0]
		fns := &netns{pid: vmPID(t, d, "web", 0)}
		fns.waitGuest(t, nic.IP, 90*time.Second)
		start := time.Now()
		if kv, err := ns.guest(nic.ExternalIP, "/"); err == nil {
			t.Errorf("policy %s: lab host → %s got through: %v", c.policy, nic.ExternalIP, kv)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("policy %s: the refused attempt took %v", c.policy, took)
		}
		kv, err := fns.guest(nic.IP, fetchWho)
		if c.vmOut && (err != nil || kv["fetch"] != "ok" || seenAddr(kv) != nic.ExternalIP) {
			t.Errorf("policy %s: VM → lab host: %v %v; want fetch=ok, seen as %s", c.policy, kv, err, nic.ExternalIP)
		}
		if !c.vmOut && (err != nil || kv["fetch"] != "fail") {
			t.Errorf("policy %s: VM → lab host: %v %v; want fetch=fail", c.policy, kv, err)
		}
	}

	d.ok("config", "undeploy", "web")
	if out, _ := exec.Command("ip", "-n", ns.name, "-o", "link").Output(); strings.Contains(string(out), "sh-fo-") {
		t.Errorf("fence veth left after undeploy:\n%s", out)
	}
}
