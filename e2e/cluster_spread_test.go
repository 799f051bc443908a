package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// spreadConfigJSON is what TestSpreadFenceAcrossHosts reads of `config
// show`: each VM's host and addresses.
type spreadConfigJSON struct {
	State string `json:"state"`
	Host  string `json:"host"`
	VMs   []struct {
		Name  string `json:"name"`
		Host  string `json:"host"`
		State string `json:"state"`
		NICs  []struct {
			IP         string `json:"ip"`
			ExternalIP string `json:"external_ip"`
		} `json:"nics"`
	} `json:"vms"`
}

// setHostMemory sets a host's registered memory in the shared store: the
// hosts of the harness are one machine, so each registers all of its
// memory; a test that needs a host full sets it smaller (the daemon reads
// it at placement, and only a new registration writes it again).
func (c *hostCluster) setHostMemory(host string, mib int) {
	c.t.Helper()
	c.storeExec("UPDATE hosts SET memory_mib = $1 WHERE name = $2", mib, host)
}

// fenceNamespaces lists the fence namespaces of a data dir's daemon.
func fenceNamespaces(dataDir string) []string {
	abs, _ := filepath.Abs(dataDir)
	sum := sha256.Sum256([]byte(abs))
	paths, _ := filepath.Glob("/run/netns/stagehand-fence-" + hex.EncodeToString(sum[:4]) + "-*")
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	return out
}

// qemusOf lists the QEMU processes of a data dir's daemon, wherever they
// run (a fenced VM runs in its fence's namespace, not its host's).
func qemusOf(dataDir string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "qemu-system") && strings.Contains(string(b), dataDir+"/") {
			out = append(out, filepath.Base(filepath.Dir(p)))
		}
	}
	return out
}

// vxlans lists the VXLAN links of the network namespace argv runs in
// (netns.exec), one `ip -d link` line each.
func vxlans(t *testing.T, ns *netns) []string {
	t.Helper()
	argv := ns.exec("ip", "-o", "-d", "link", "show", "type", "vxlan")
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// ip warns about the peer namespaces it cannot name from here.
		if strings.Contains(l, "vxlan id") {
			lines = append(lines, l)
		}
	}
	return lines
}

// saveAndResume undeploys TestSpreadFenceAcrossHosts's "web" saving its
// state: both guests saved, nothing left running, b's disks and state home
// on h1; then deploys it --fenced --spread again: b's state moves to h2
// with its disks and each guest resumes (its boot id as before: boots).
func saveAndResume(t *testing.T, h1, h2 *clusterHost, boots map[string]string) {
	t.Helper()
	start := time.Now()
	h1.ok("config", "undeploy", "web", "--save-state")
	t.Logf("undeploy --save-state took %s", time.Since(start).Round(time.Millisecond))
	var cfg spreadConfigJSON
	h1.json(&cfg, "config", "show", "web")
	if cfg.State != "undeployed" || cfg.VMs[0].State != "saved" || cfg.VMs[1].State != "saved" || cfg.VMs[1].Host != "h1" {
		t.Fatalf("after undeploy --save-state: %+v, want undeployed, both VMs saved, b home on h1", cfg)
	}
	for _, h := range []*clusterHost{h1, h2} {
		if q := qemusOf(h.dataDir); len(q) != 0 {
			t.Errorf("%s: QEMU left after undeploy --save-state: %v", h.name, q)
		}
	}
	states, _ := filepath.Glob(filepath.Join(h1.dataDir, "state", "*.state"))
	if len(states) != 2 {
		t.Errorf("saved states on h1: %v, want both VMs'", states)
	}

	start = time.Now()
	h1.ok("config", "deploy", "web", "--fenced", "--spread")
	t.Logf("deploy --spread resuming took %s", time.Since(start).Round(time.Millisecond))
	h1.json(&cfg, "config", "show", "web")
	if cfg.State != "deployed" || cfg.VMs[0].Host != "h1" || cfg.VMs[1].Host != "h2" {
		t.Fatalf("redeployed: %+v, want deployed with a on h1 and b on h2", cfg)
	}
	flushNeighbours(t, h1.ns) // a new fence answers from new MACs
	for _, vm := range cfg.VMs {
		kv := h1.ns.waitGuest(t, vm.NICs[0].ExternalIP, 90*time.Second)
		if kv["boot"] == "" || kv["boot"] != boots[vm.Name] || kv["ip"] != vm.NICs[0].IP {
			t.Errorf("guest %s on %s at %s: boot %q ip %q; want boot %q (resumed), ip %s", vm.Name, vm.Host, vm.NICs[0].ExternalIP, kv["boot"], kv["ip"], boots[vm.Name], vm.NICs[0].IP)
		}
	}
	t.Logf("each guest resumed on its host with its boot id: a on h1 %s, b on h2 %s", boots["a"], boots["b"])
}

// memberVMThroughHome reaches guest b, which runs on h2, through h1 (the
// home) as a user does: its screen, a stop and a start (h1 forwards them
// to h2, whose QEMU goes and comes back, the store recording b stopped,
// then running), and its serial log with the new boot's address line.
// bootB is b's boot id before.
func memberVMThroughHome(t *testing.T, h1, h2 *clusterHost, bootB string) {
	t.Helper()
	png := filepath.Join(t.TempDir(), "b.png")
	h1.ok("vm", "screenshot", "web", "b", png)
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("b's screen through h1: %d bytes, %v; want a PNG", len(b), err)
	}
	waitB := func(state string, qemus int) spreadConfigJSON {
		t.Helper()
		var cfg spreadConfigJSON
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			h1.json(&cfg, "config", "show", "web")
			if cfg.VMs[1].State == state && len(qemusOf(h2.dataDir)) == qemus {
				return cfg
			}
			if time.Now().After(deadline) {
				t.Fatalf("b through h1: %+v, QEMUs on h2 %v; want b %s with %d QEMU on h2", cfg, qemusOf(h2.dataDir), state, qemus)
			}
		}
	}
	start := time.Now()
	h1.ok("vm", "stop", "web", "b")
	waitB("stopped", 0)
	t.Logf("vm stop of b (h2) through h1 took %s", time.Since(start).Round(time.Millisecond))
	h1.ok("vm", "start", "web", "b")
	cfg := waitB("running", 1)
	if q := qemusOf(h1.dataDir); len(q) != 1 {
		t.Errorf("QEMUs on h1 after b's start: %v, want a's only", q)
	}
	b := cfg.VMs[1].NICs[0]
	if kv := h1.ns.waitGuest(t, b.ExternalIP, 120*time.Second); kv["boot"] == "" || kv["boot"] == bootB {
		t.Errorf("b after stop and start through h1: boot %q, want a new boot (was %q)", kv["boot"], bootB)
	}
	t.Logf("b stopped and started again on h2 through h1 in %s", time.Since(start).Round(time.Millisecond))
	if log := h1.ok("vm", "log", "web", "b"); !strings.Contains(log, "STAGEHAND-IP eth0 "+b.IP) {
		t.Errorf("b's serial log through h1 lacks its address line:\n%s", log)
	}
}

// TestSpreadFenceAcrossHosts (issue 13): a fenced configuration of two
// guests deployed --spread, with room for one guest on each host, runs
// guest a on its home h1 (the fence's router) and guest b on h2, joined by
// a VXLAN over the underlay. From h1's outside network b answers on its
// external address (NAT on h1, across the VXLAN), b fetches from a by a's
// internal address (across the VXLAN the other way), each guest's DHCP
// lease gave it the underlay's MTU less the VXLAN's 50 bytes. Undeployed
// --save-state and deployed --spread again, each guest resumes on its
// host (saveAndResume); through h1, b's screen, a stop and a start and its
// serial log reach it on h2 (memberVMThroughHome); and undeploy leaves no VXLAN, fence namespace or
// QEMU on either host.
func TestSpreadFenceAcrossHosts(t *testing.T) {
	guest := guestImages(t)
	c := newCluster(t, 2)
	logOnFailure(t, c)
	h1, h2 := c.host(1), c.host(2)
	// Room for one 256 MiB guest each.
	c.setHostMemory("h1", 400)
	c.setHostMemory("h2", 400)
	// BIOS-booted: its disk is the whole guest (a kernel template's boot
	// files stay on the host that imported it).
	h1.ok("template", "import", "bg", "--disk", filepath.Join(guest, "disk.qcow2"), "--memory", "256")
	h1.ok("network", "create", "lan", "--subnet", "10.73.0.0/24", "--pool", "10.73.0.10-10.73.0.50")
	h1.ok("config", "create", "web", "--vm", "a=bg,net=lan", "--vm", "b=bg,net=lan")

	h1.fails(2, "--spread needs --fenced", "config", "deploy", "web", "--spread")

	start := time.Now()
	out := h1.ok("config", "deploy", "web", "--fenced", "--spread", "--explain")
	t.Logf("deploy --spread took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, want := range []string{"VM a: placed on h1", "VM b: placed on h2", "h1: no: needs 256 MiB of memory"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy --explain does not say %q", want)
		}
	}
	var cfg spreadConfigJSON
	h1.json(&cfg, "config", "show", "web")
	if cfg.State != "deployed" || len(cfg.VMs) != 2 || cfg.VMs[0].Host != "h1" || cfg.VMs[1].Host != "h2" {
		t.Fatalf("config show web: %+v, want deployed with a on h1 and b on h2", cfg)
	}
	if show := h2.ok("config", "show", "web"); !strings.Contains(show, "HOST") {
		t.Errorf("config show has no HOST column:\n%s", show)
	}
	intA, extB := cfg.VMs[0].NICs[0].IP, cfg.VMs[1].NICs[0].ExternalIP
	if q1, q2 := qemusOf(h1.dataDir), qemusOf(h2.dataDir); len(q1) != 1 || len(q2) != 1 {
		t.Fatalf("QEMU per host: h1 %v, h2 %v; want one each", q1, q2)
	}
	// One VXLAN per host, in its fence's namespace (where its QEMU runs:
	// the daemon's bind mount of the namespace lives in its own mount
	// namespace), with the same VNI.
	var vnis []string
	for _, h := range []*clusterHost{h1, h2} {
		fences := fenceNamespaces(h.dataDir)
		if len(fences) != 1 {
			t.Fatalf("%s: fence namespaces %v, want one", h.name, fences)
		}
		pid, _ := strconv.Atoi(qemusOf(h.dataDir)[0])
		vx := vxlans(t, &netns{pid: pid})
		if len(vx) != 1 || !strings.Contains(vx[0], "mtu 1450") {
			t.Fatalf("%s: VXLANs in its fence %q, want one of MTU 1450", h.name, vx)
		}
		f := strings.Fields(vx[0][strings.Index(vx[0], "vxlan id "):])
		vnis = append(vnis, f[2])
	}
	if vnis[0] != vnis[1] {
		t.Errorf("VNIs %v: the hosts' VXLANs differ", vnis)
	}

	// b, on h2, answers on its external address from h1's outside
	// network: NAT on h1, then the VXLAN to h2.
	kv := h1.ns.waitGuest(t, extB, 240*time.Second)
	if kv["ip"] != cfg.VMs[1].NICs[0].IP {
		t.Errorf("the guest at %s says ip=%q, want b's internal %s", extB, kv["ip"], cfg.VMs[1].NICs[0].IP)
	}
	if kv["mtu.eth0"] != "1450" {
		t.Errorf("b's eth0 MTU %q, want 1450: the underlay's 1500 less VXLAN's 50, from its DHCP lease", kv["mtu.eth0"])
	}
	// b reaches a by a's internal address: across the VXLAN to h1.
	var fetched map[string]string
	var err error
	for deadline := time.Now().Add(180 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if fetched, err = h1.ns.guest(extB, "/fetch?url=http://"+intA+"/"); err == nil && fetched["fetch"] == "ok" {
			break
		}
	}
	if fetched["fetch"] != "ok" || fetched["ip"] != intA {
		t.Fatalf("b fetching http://%s/: %v %v", intA, fetched, err)
	}
	if fetched["mtu.eth0"] != "1450" {
		t.Errorf("a's eth0 MTU %q, want 1450 (its lease, from the same router)", fetched["mtu.eth0"])
	}
	t.Logf("b at %s (h2) fetched a at %s (h1): hostname %s, MTU %s", extB, intA, fetched["hostname"], fetched["mtu.eth0"])

	kvA := h1.ns.waitGuest(t, cfg.VMs[0].NICs[0].ExternalIP, 30*time.Second)
	saveAndResume(t, h1, h2, map[string]string{"a": kvA["boot"], "b": kv["boot"]})
	memberVMThroughHome(t, h1, h2, kv["boot"])

	start = time.Now()
	h1.ok("config", "undeploy", "web")
	t.Logf("undeploy took %s", time.Since(start).Round(time.Millisecond))
	for _, h := range []*clusterHost{h1, h2} {
		if q := qemusOf(h.dataDir); len(q) != 0 {
			t.Errorf("%s: QEMU left: %v", h.name, q)
		}
		if f := fenceNamespaces(h.dataDir); len(f) != 0 {
			t.Errorf("%s: fence namespaces left: %v", h.name, f)
		}
		if vx := vxlans(t, h.ns); len(vx) != 0 {
			t.Errorf("%s: VXLANs left in its namespace: %q", h.name, vx)
		}
	}
	h1.json(&cfg, "config", "show", "web")
	if cfg.State != "undeployed" || cfg.VMs[1].Host != "h1" {
		t.Errorf("after undeploy: %+v, want undeployed with b's disks home on h1", cfg)
	}
}
