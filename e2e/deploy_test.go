package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The deploy tests run the daemon, its bridges, taps, DHCP servers and
// QEMU guests inside a network namespace each test creates, and reach the
// guests from that namespace only. Nothing touches the host's namespace.

func requireVMs(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no guests in the fast tier")
	}
	requireTools(t)
	if os.Geteuid() != 0 {
		t.Skip("deploy tests need root (bridges, taps, namespaces)")
	}
	for _, b := range []string{"qemu-system-x86_64", "ip", "curl"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed: %v", b, err)
		}
	}
}

// guestImages builds the test guest (idempotent) and returns its directory.
func guestImages(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/build-test-guest.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("build test guest: %v\n%s", err, out)
	}
	dir, _ := filepath.Abs("../testdata/guest/out")
	return dir
}

// netns is a throwaway network namespace, or (with pid set) the network
// namespace of a process.
type netns struct {
	name string
	pid  int
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := &netns{name: "sh-e2e-" + hex.EncodeToString(b)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Kill everything still running in it (daemon, QEMU), then delete
		// it: its bridges and taps go with it.
		for i := 0; i < 50; i++ {
			out, _ := exec.Command("ip", "netns", "pids", n.name).Output()
			pids := strings.Fields(string(out))
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				if pid, err := strconv.Atoi(p); err == nil {
					if proc, err := os.FindProcess(pid); err == nil {
						proc.Kill()
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		exec.Command("ip", "netns", "del", n.name).Run()
	})
	if out, err := exec.Command("ip", "-n", n.name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v\n%s", err, out)
	}
	return n
}

// exec returns argv that runs inside the namespace.
func (n *netns) exec(argv ...string) []string {
	if n.pid != 0 {
		return append([]string{"nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", n.pid)}, argv...)
	}
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// qemuPIDs lists the QEMU processes in the namespace.
func (n *netns) qemuPIDs(t *testing.T) []string {
	out, _ := exec.Command("ip", "netns", "pids", n.name).Output()
	var qemus []string
	for _, p := range strings.Fields(string(out)) {
		cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
		if strings.Contains(string(cmdline), "qemu-system") {
			qemus = append(qemus, p)
		}
	}
	return qemus
}

// taps lists the tap interfaces in the namespace.
func (n *netns) taps(t *testing.T) []string {
	out, err := exec.Command("ip", "-n", n.name, "-o", "link", "show", "type", "tun").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}

// guest asks a guest's HTTP responder for path and parses key=value lines.
func (n *netns) guest(ip, path string) (map[string]string, error) {
	limit := 3 * time.Second
	if path != "/" {
		limit = 12 * time.Second // /fetch and /ping wait for the guest's own request
	}
	return n.guestWithin(ip, path, limit)
}

// guestWithin is guest with the time the answer may take.
func (n *netns) guestWithin(ip, path string, limit time.Duration) (map[string]string, error) {
	argv := n.exec("curl", "-sf", "--max-time", strconv.FormatFloat(limit.Seconds(), 'f', -1, 64), "http://"+ip+path)
	var stderr strings.Builder
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("GET http://%s%s: %v %s", ip, path, err, strings.TrimSpace(stderr.String()))
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = v
		}
	}
	return kv, nil
}

// waitGuest waits until the guest at ip answers.
func (n *netns) waitGuest(t *testing.T, ip string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		var kv map[string]string
		if kv, err = n.guest(ip, "/"); err == nil {
			return kv
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("guest %s never answered: %v\n%s", ip, err, n.diagnose())
	return nil
}

// diagnose describes the namespace for a failed wait: its links and
// neighbours, and the last lines of the serial console of every QEMU that
// runs in it.
func (n *netns) diagnose() string {
	var b strings.Builder
	for _, argv := range [][]string{{"ip", "-br", "link"}, {"ip", "-br", "addr"}, {"ip", "neigh"}} {
		out, _ := exec.Command(argv[0], append([]string{"-n", n.name}, argv[1:]...)...).CombinedOutput()
		fmt.Fprintf(&b, "$ ip -n %s %s\n%s", n.name, strings.Join(argv[1:], " "), out)
	}
	out, _ := exec.Command("ip", "netns", "pids", n.name).Output()
	for _, pid := range strings.Fields(string(out)) {
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), "qemu-system") {
			continue
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			_, after, ok := strings.Cut(arg, "logfile=")
			if !ok {
				continue
			}
			path, _, _ := strings.Cut(after, ",")
			log, _ := os.ReadFile(path)
			lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
			if len(lines) > 15 {
				lines = lines[len(lines)-15:]
			}
			fmt.Fprintf(&b, "--- last lines of %s (QEMU pid %s):\n%s\n", path, pid, strings.Join(lines, "\n"))
		}
	}
	return b.String()
}

// startDaemonIn runs the daemon inside ns. Its guests run under TCG, as
// on every machine these tests run on: an --accel auto probe per data dir
// would cost each test up to the probe's timeout where a KVM guest hangs.
// The probe itself is tested in accel_test.go and internal/hypervisor.
func startDaemonIn(t *testing.T, ns *netns, dataDir string, env ...string) *daemon {
	t.Helper()
	t.Cleanup(func() { killLeftovers(dataDir) })
	d := startDaemonArgv(t, dataDir, ns.exec(binary, "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--accel", "tcg"), env...)
	d.wrap = ns.exec
	return d
}

// killLeftovers kills every QEMU of a data dir (fenced VMs run in their
// fence's namespace, not the test's, so a failed test could leave them)
// and removes the data dir's fence namespaces.
func killLeftovers(dataDir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "qemu-system") || !strings.Contains(string(b), dataDir+"/") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			if proc, err := os.FindProcess(pid); err == nil {
				proc.Kill()
			}
		}
	}
	abs, _ := filepath.Abs(dataDir)
	sum := sha256.Sum256([]byte(abs))
	fences, _ := filepath.Glob("/run/netns/stagehand-fence-" + hex.EncodeToString(sum[:4]) + "-*")
	for _, f := range fences {
		exec.Command("ip", "netns", "del", filepath.Base(f)).Run()
	}
}

// deployFixture imports the two test-guest templates (BIOS disk boot and
// direct kernel boot) and creates a network.
func deployFixture(t *testing.T, d *daemon, guest, subnet, pool string) {
	t.Helper()
	cmdline, err := os.ReadFile(filepath.Join(guest, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	d.ok("template", "import", "biosguest", "--disk", filepath.Join(guest, "disk.qcow2"), "--memory", "256")
	d.ok("template", "import", "kguest", "--disk", filepath.Join(guest, "data.qcow2"), "--memory", "256",
		"--kernel", filepath.Join(guest, "vmlinuz"), "--initrd", filepath.Join(guest, "initrd.img"),
		"--cmdline", strings.TrimSpace(string(cmdline)))
	d.ok("network", "create", "lan", "--subnet", subnet, "--pool", pool)
}

func ipsOf(c configJSON) []string {
	var ips []string
	for _, vm := range c.VMs {
		ips = append(ips, vm.NICs[0].IP)
	}
	return ips
}

func TestDeployGuestsReachEachOtherAndKeepData(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.70.0.0/24", "10.70.0.10-10.70.0.50")
	d.ok("config", "create", "web", "--vm", "a=biosguest,net=lan", "--vm", "b=kguest,net=lan")

	d.ok("config", "deploy", "web")
	web := d.config("web")
	if web.State != "deployed" {
		t.Fatalf("state %s after deploy", web.State)
	}
	ips := ipsOf(web)
	for i, ip := range ips {
		kv := ns.waitGuest(t, ip, 90*time.Second)
		// The guest got its reserved address by DHCP.
		if !strings.Contains(kv["ip"], ip) {
			t.Errorf("VM %s reports ip %q, want its reservation %s", web.VMs[i].Name, kv["ip"], ip)
		}
	}
	// The two guests reach each other.
	if kv, err := ns.guest(ips[0], "/ping?host="+ips[1]); err != nil || !strings.Contains(fmt.Sprint(kv), "ok") {
		t.Errorf("a cannot ping b: %v %v", kv, err)
	}
	if kv, err := ns.guest(ips[1], "/ping?host="+ips[0]); err != nil || !strings.Contains(fmt.Sprint(kv), "ok") {
		t.Errorf("b cannot ping a: %v %v", kv, err)
	}

	// Data written in a guest persists across undeploy/deploy.
	if _, err := ns.guest(ips[1], "/write?marker=persisted"); err != nil {
		t.Fatal(err)
	}
	d.ok("config", "undeploy", "web", "--discard-state")
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU processes left after undeploy: %v", pids)
	}
	if taps := ns.taps(t); len(taps) != 0 {
		t.Errorf("taps left after undeploy: %v", taps)
	}
	d.ok("config", "deploy", "web")
	if kv := ns.waitGuest(t, ips[1], 90*time.Second); kv["marker"] != "persisted" {
		t.Errorf("after redeploy marker=%q, want persisted", kv["marker"])
	}
	d.ok("config", "undeploy", "web")

	// A linked clone sees the data; later writes do not cross.
	d.ok("config", "clone", "web", "web2")
	// Deploying both unfenced would duplicate addresses: refused.
	d.ok("config", "deploy", "web")
	d.fails(4, ips[0], "config", "deploy", "web2")
	d.ok("config", "undeploy", "web")
	d.ok("config", "deploy", "web2")
	if kv := ns.waitGuest(t, ips[1], 90*time.Second); kv["marker"] != "persisted" {
		t.Errorf("clone sees marker=%q, want persisted", kv["marker"])
	}
	if _, err := ns.guest(ips[1], "/write?marker=clone-only"); err != nil {
		t.Fatal(err)
	}
	d.ok("config", "undeploy", "web2")
	d.ok("config", "deploy", "web")
	if kv := ns.waitGuest(t, ips[1], 90*time.Second); kv["marker"] != "persisted" {
		t.Errorf("source sees marker=%q after the clone wrote, want persisted", kv["marker"])
	}
	d.ok("config", "undeploy", "web")
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
}

func TestSaveStateResumesGuest(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	d := startDaemonIn(t, ns, t.TempDir())
	deployFixture(t, d, guest, "10.71.0.0/24", "10.71.0.10-10.71.0.50")
	d.ok("config", "create", "s", "--vm", "a=kguest,net=lan")
	d.ok("config", "deploy", "s")
	ip := ipsOf(d.config("s"))[0]
	ns.waitGuest(t, ip, 90*time.Second)
	time.Sleep(time.Second)
	before := ns.waitGuest(t, ip, 10*time.Second)
	d.ok("config", "undeploy", "s", "--save-state")
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU left after save: %v", pids)
	}
	c := d.config("s")
	if c.State != "undeployed" || c.VMs[0].State != "saved" {
		t.Errorf("after save: config %s, VM %s; want undeployed, saved", c.State, c.VMs[0].State)
	}
	// A clone of a saved configuration starts powered off: no state shared.
	d.ok("config", "clone", "s", "s-clone")
	if st := d.config("s-clone").VMs[0].State; st != "undeployed" {
		t.Errorf("clone of a saved configuration has VM state %s, want undeployed", st)
	}
	d.ok("config", "deploy", "s")
	after := ns.waitGuest(t, ip, 30*time.Second)
	cb, _ := strconv.Atoi(before["counter"])
	ca, _ := strconv.Atoi(after["counter"])
	ub, _ := strconv.ParseFloat(strings.Fields(before["uptime"] + " 0")[0], 64)
	ua, _ := strconv.ParseFloat(strings.Fields(after["uptime"] + " 0")[0], 64)
	if ca < cb || ua < ub {
		t.Errorf("guest restarted instead of resuming: counter %d→%d, uptime %.1f→%.1f", cb, ca, ub, ua)
	}
	d.ok("config", "undeploy", "s")
}

func TestDeployFailureLeavesNothing(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	d := startDaemonIn(t, ns, t.TempDir())
	deployFixture(t, d, guest, "10.72.0.0/24", "10.72.0.10-10.72.0.50")
	d.ok("config", "create", "f", "--vm", "a=kguest,net=lan", "--vm", "b=kguest,net=lan")
	// Take b's top layer away so its QEMU cannot start.
	top := d.config("f").VMs[1].Disks[0].Path
	if err := os.Rename(top, top+".away"); err != nil {
		t.Fatal(err)
	}
	r := d.run("config", "deploy", "f")
	if r.code == 0 || !strings.Contains(r.stderr, "b") {
		t.Errorf("deploy with a missing layer: exit %d, %s", r.code, r.stderr)
	}
	if err := os.Rename(top+".away", top); err != nil {
		t.Fatal(err)
	}
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU left after a failed deploy: %v", pids)
	}
	if taps := ns.taps(t); len(taps) != 0 {
		t.Errorf("taps left after a failed deploy: %v", taps)
	}
	if st := d.config("f").State; st != "undeployed" {
		t.Errorf("state %s after a failed deploy, want undeployed", st)
	}
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
	// And it deploys once the layer is back.
	d.ok("config", "deploy", "f")
	d.ok("config", "undeploy", "f")
}

func TestDaemonKillReadoptsVMs(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.73.0.0/24", "10.73.0.10-10.73.0.50")
	d.ok("config", "create", "one", "--vm", "a=kguest,net=lan")
	d.ok("config", "create", "two", "--vm", "a=kguest,net=lan", "--vm", "b=biosguest,net=lan")
	d.ok("config", "deploy", "one")
	d.ok("config", "deploy", "two")
	type vmState struct {
		pid    int
		uptime float64
	}
	snapshot := func(d *daemon) map[string]vmState {
		out := map[string]vmState{}
		for _, name := range []string{"one", "two"} {
			var c struct {
				VMs []struct {
					Name string `json:"name"`
					PID  int    `json:"pid"`
					NICs []struct {
						IP string `json:"ip"`
					} `json:"nics"`
				} `json:"vms"`
			}
			d.json(&c, "config", "show", name)
			for _, vm := range c.VMs {
				kv := ns.waitGuest(t, vm.NICs[0].IP, 90*time.Second)
				up, _ := strconv.ParseFloat(strings.Fields(kv["uptime"] + " 0")[0], 64)
				out[name+"/"+vm.Name] = vmState{pid: vm.PID, uptime: up}
			}
		}
		return out
	}
	before := snapshot(d)
	d.kill()
	d2 := startDaemonIn(t, ns, data)
	after := snapshot(d2)
	for k, b := range before {
		a := after[k]
		if b.pid == 0 || a.pid != b.pid {
			t.Errorf("%s: PID %d before, %d after the restart: want the same process", k, b.pid, a.pid)
		}
		if a.uptime < b.uptime {
			t.Errorf("%s: uptime %.1f → %.1f: the guest restarted", k, b.uptime, a.uptime)
		}
	}
	// The doctor is clean while guests run (their tops are in use).
	if r := d2.run("doctor"); r.code != 0 {
		t.Errorf("doctor while deployed: %s%s", r.stdout, r.stderr)
	}
	d2.ok("config", "undeploy", "one")
	d2.ok("config", "undeploy", "two")
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU left: %v", pids)
	}
}

// TestVMActionsConsoleAndLostVM drives one VM at a time: its serial log
// and console, ACPI stop and start, reset, a dhcp NIC, and a VM that dies
// while the daemon is down.
func TestVMActionsConsoleAndLostVM(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.74.0.0/24", "10.74.0.10-10.74.0.50")
	d.ok("config", "create", "v", "--vm", "a=kguest,net=lan", "--vm", "dyn=kguest,net=lan,ip=dhcp")
	d.ok("config", "deploy", "v")
	c := d.config("v")
	ip := c.VMs[0].NICs[0].IP
	first := ns.waitGuest(t, ip, 90*time.Second)

	// The serial log holds the guest's boot lines.
	if out := d.ok("vm", "log", "v", "a"); !strings.Contains(out, "STAGEHAND-IP eth0 "+ip) {
		t.Errorf("vm log lacks the guest's address line:\n%s", out)
	}
	// The dhcp NIC got a dynamic lease outside the pool (.10-.50) and the gateway.
	deadline := time.Now().Add(90 * time.Second)
	var dynIP string
	for time.Now().Before(deadline) && dynIP == "" {
		out := d.ok("vm", "log", "v", "dyn")
		lines := strings.Split(out, "\n")
		for _, line := range lines[:len(lines)-1] { // the last one may be half written
			if f := strings.Fields(line); len(f) == 3 && f[0] == "STAGEHAND-IP" {
				dynIP = f[2]
			}
		}
		time.Sleep(time.Second)
	}
	if last, _ := strconv.Atoi(dynIP[strings.LastIndex(dynIP, ".")+1:]); !strings.HasPrefix(dynIP, "10.74.0.") || (last >= 1 && last <= 50) {
		t.Errorf("dhcp NIC got %q, want an address of 10.74.0.0/24 outside the gateway and the pool", dynIP)
	}
	// The console is a byte stream: a pipe in, the guest's output out.
	argv := ns.exec(binary, "--server", d.url, "--token-file", d.tokenFile(), "vm", "console", "v", "a")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("vm console through a pipe: %v\n%s", err, out)
	}

	// Reset reboots the guest: a new boot id.
	d.ok("vm", "reset", "v", "a")
	time.Sleep(2 * time.Second)
	if kv := ns.waitGuest(t, ip, 90*time.Second); kv["boot"] == first["boot"] {
		t.Errorf("vm reset: boot id unchanged %q", kv["boot"])
	}
	// Stop is an ACPI power-off: the guest goes down and the VM is stopped.
	d.ok("vm", "stop", "v", "a")
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && d.config("v").VMs[0].State != "stopped" {
		time.Sleep(200 * time.Millisecond)
	}
	if st := d.config("v").VMs[0].State; st != "stopped" {
		t.Fatalf("after vm stop: state %s, want stopped", st)
	}
	d.ok("vm", "start", "v", "a")
	ns.waitGuest(t, ip, 90*time.Second)

	// A VM that dies while the daemon is down is reported, not hidden.
	pid := vmPID(t, d, "v", 0)
	d.kill()
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
	time.Sleep(500 * time.Millisecond)
	d2 := startDaemonIn(t, ns, data)
	c = d2.config("v")
	if c.State != "failed" || c.VMs[0].State != "failed" || c.VMs[1].State != "running" {
		t.Errorf("after restart with a dead VM: config %s, VMs %s/%s; want failed, failed/running", c.State, c.VMs[0].State, c.VMs[1].State)
	}
	d2.ok("config", "undeploy", "v")
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU left: %v", pids)
	}
	if r := d2.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
}
