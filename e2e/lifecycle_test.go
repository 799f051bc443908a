package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Library, archives, export/import between two daemons, leases, cleanup
// and the event log, driven through the binary.

type archiveJSON struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	VMs  []struct {
		Name  string `json:"name"`
		Disks []struct {
			Path   string `json:"path"`
			SHA256 string `json:"sha256"`
		} `json:"disks"`
	} `json:"vms"`
}

type eventJSON struct {
	ID      int64  `json:"id"`
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Object  string `json:"object"`
	Subject string `json:"subject"`
	Result  string `json:"result"`
}

func qemuImgCompare(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "compare", "-q", a, b).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s %s: %v %s", a, b, err, out)
	}
}

// entriesIn lists a directory (nothing when it is missing).
func entriesIn(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestExportImportBetweenDaemons(t *testing.T) {
	requireTools(t)
	img := makeImage(t, t.TempDir())
	one := startDaemon(t, t.TempDir())
	one.ok("template", "import", "linux", "--disk", img, "--cpus", "2", "--memory", "384")
	one.ok("network", "create", "lan", "--subnet", "10.62.0.0/24", "--pool", "10.62.0.10-10.62.0.20")
	one.ok("config", "create", "web", "--vm", "app=linux,net=lan", "--vm", "db=linux,net=lan,ip=10.62.0.5", "--vm", "dyn=linux,net=lan,ip=dhcp")
	web := one.config("web")
	qemuIO(t, web.VMs[0].Disks[0].Path, "write -P 0xbb 1M 2M")
	qemuIO(t, web.VMs[1].Disks[0].Path, "write -P 0xcc 8M 1M")
	one.ok("config", "clone", "web", "web-2") // web's data layers now frozen and shared
	qemuIO(t, one.config("web").VMs[0].Disks[0].Path, "write -P 0xdd 16M 1M")
	web = one.config("web")

	one.ok("archive", "create", "web", "arch")
	var arch archiveJSON
	one.json(&arch, "archive", "show", "arch")
	if !strings.HasPrefix(arch.Dir, filepath.Join(one.dataDir, "archive")) || len(arch.VMs) != 3 {
		t.Fatalf("archive: %+v", arch)
	}
	bundle := filepath.Join(t.TempDir(), "web.tar")
	one.ok("archive", "export", "arch", bundle)
	one.fails(4, "already exists", "archive", "export", "arch", bundle)

	// A second daemon with its own data dir and a network of another name.
	two := startDaemon(t, t.TempDir())
	two.ok("network", "create", "office", "--subnet", "10.62.0.0/24", "--pool", "10.62.0.10-10.62.0.20")
	two.fails(3, "lan", "archive", "import", bundle)
	if es := entriesIn(filepath.Join(two.dataDir, "archive")); len(es) != 0 {
		t.Errorf("refused import left %v", es)
	}
	two.ok("archive", "import", bundle, "--name", "moved", "--map-network", "lan=office")
	two.ok("archive", "restore", "moved", "web")
	moved := two.config("web")
	for i, vm := range moved.VMs {
		qemuImgCompare(t, vm.Disks[0].Path, web.VMs[i].Disks[0].Path)
		got, want := vm.NICs[0], web.VMs[i].NICs[0]
		if got.Network != "office" || got.IPMode != want.IPMode || got.IP != want.IP || got.MAC == want.MAC {
			t.Errorf("%s NIC %+v, source %+v: want the same mode and address on office, a new MAC", vm.Name, got, want)
		}
		if len(vm.Disks[0].Chain) != 1 {
			t.Errorf("%s restored chain %v, want one base", vm.Name, vm.Disks[0].Chain)
		}
	}
	var tmpl struct {
		CPUs      int `json:"cpus"`
		MemoryMiB int `json:"memory_mib"`
	}
	two.json(&tmpl, "template", "show", "linux")
	if tmpl.CPUs != 2 || tmpl.MemoryMiB != 384 {
		t.Errorf("template made from the bundle: %+v", tmpl)
	}
	if r := two.run("doctor"); r.code != 0 {
		t.Errorf("doctor on the second daemon: %s%s", r.stdout, r.stderr)
	}

	// Damaged bundles: refused, nothing created, on a third daemon.
	good, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	dataOff := func(name string) (int64, int64) {
		r := bytes.NewReader(good)
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("no %s in the bundle: %v", name, err)
			}
			if h.Name == name {
				return int64(len(good)) - int64(r.Len()), h.Size
			}
		}
	}
	diskOff, diskSize := dataOff("disks/vm0-disk0.qcow2")
	manOff, manSize := dataOff("manifest.json")
	three := startDaemon(t, t.TempDir())
	three.ok("network", "create", "lan", "--subnet", "10.62.0.0/24", "--pool", "10.62.0.10-10.62.0.20")
	for name, damage := range map[string]func([]byte) []byte{
		"flipped":   func(b []byte) []byte { b[diskOff+diskSize/2] ^= 0x40; return b },
		"truncated": func(b []byte) []byte { return b[:diskOff+diskSize/2] },
		"tampered": func(b []byte) []byte {
			m := strings.Replace(string(b[manOff:manOff+manSize]), `"cpus":2`, `"cpus":9`, 1)
			copy(b[manOff:], m)
			return b
		},
	} {
		bad := filepath.Join(t.TempDir(), name+".tar")
		if err := os.WriteFile(bad, damage(append([]byte(nil), good...)), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := three.run("archive", "import", bad); r.code == 0 {
			t.Errorf("%s bundle imported", name)
		} else {
			t.Logf("%s bundle refused: %s", name, strings.TrimSpace(r.stderr))
		}
	}
	var archives []archiveJSON
	three.json(&archives, "archive", "list")
	if len(archives) != 0 {
		t.Errorf("archives after refused imports: %+v", archives)
	}
	if es := entriesIn(filepath.Join(three.dataDir, "archive")); len(es) != 0 {
		t.Errorf("refused imports left %v", es)
	}
	one.stop()
	two.stop()
	three.stop()
}

func TestLibraryLeasesCleanupEvents(t *testing.T) {
	requireTools(t)
	img := makeImage(t, t.TempDir())
	data := t.TempDir()
	archiveDir := filepath.Join(t.TempDir(), "elsewhere")
	d := startDaemonArgv(t, data, []string{binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--no-vms",
		"--archive-dir", archiveDir, "--reap-interval", "200ms", "--cleanup-policy", "delete", "--cleanup-grace", "2s"})

	// Follow the event stream from the start, as the web console would.
	resp := followEvents(t, d)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("events content type %q", ct)
	}
	stream := bufio.NewScanner(resp.Body)

	d.ok("template", "import", "linux", "--disk", img)
	d.ok("config", "create", "web", "--vm", "app=linux", "--storage-lease", "never")
	qemuIO(t, d.config("web").VMs[0].Disks[0].Path, "write -P 0x21 0 4M")
	d.ok("library", "capture", "web", "gold")
	d.fails(4, "library entry", "config", "change-ips", "gold")
	d.fails(4, "library entry", "config", "delete", "gold")
	var lib []configJSON
	d.json(&lib, "library", "list")
	if len(lib) != 1 || lib[0].Name != "gold" || len(lib[0].VMs[0].Disks[0].Chain) != 3 {
		t.Fatalf("library list: %+v", lib)
	}
	d.ok("library", "checkout", "gold", "ws")
	if c := d.config("ws"); len(c.VMs[0].Disks[0].Chain) != 3 {
		t.Errorf("checkout chain %v, want 3 layers (on the captured layer)", c.VMs[0].Disks[0].Chain)
	}
	d.ok("archive", "create", "ws", "ws-arch")
	if es := entriesIn(archiveDir); len(es) != 1 {
		t.Errorf("archive dir %s holds %v, want one archive", archiveDir, es)
	}

	// Storage leases: ws and the archive expire, are marked, then deleted
	// after the grace period; gold expires too. web (never) stays.
	d.ok("config", "lease", "ws", "--storage", "1s")
	d.ok("config", "lease", "gold", "--storage", "1s")
	d.ok("archive", "lease", "ws-arch", "--storage", "1s")
	time.Sleep(1500 * time.Millisecond)
	var rep struct {
		Items []struct {
			Object string `json:"object"`
			Name   string `json:"name"`
			Frees  int64  `json:"frees"`
		} `json:"items"`
		Frees int64 `json:"frees"`
	}
	d.json(&rep, "cleanup")
	if len(rep.Items) != 3 || rep.Frees <= 0 {
		t.Errorf("cleanup view: %+v, want ws, gold and ws-arch", rep)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if d.run("config", "show", "ws").code == 3 && d.run("archive", "show", "ws-arch").code == 3 && d.run("library", "show", "gold").code == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ws, ws-arch and gold not all deleted by the reaper")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if es := entriesIn(archiveDir); len(es) != 0 {
		t.Errorf("archive dir after the reaper: %v", es)
	}
	d.config("web")
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}

	// cleanup --apply on an idle-free, expired-free lab deletes nothing;
	// on an expired one it frees what it said.
	d.ok("config", "clone", "web", "old")
	d.ok("config", "lease", "old", "--storage", "1s")
	d.json(&rep, "cleanup", "--apply", "--dry-run")
	if r := d.run("config", "show", "old"); r.code != 0 {
		t.Errorf("dry run deleted old")
	}

	// The log: who, what, result, in order; the stream saw the same.
	var evs []eventJSON
	d.json(&evs, "events")
	var seen []string
	for _, e := range evs {
		seen = append(seen, e.Action+":"+e.Subject+":"+e.Actor)
	}
	joined := strings.Join(seen, " ")
	// The harness sends the first administrator's token (DATA/admin.token):
	// the actor is who authenticated, whatever $USER says.
	user := "admin"
	for _, want := range []string{"capture:gold:" + user, "checkout:ws:" + user, "archive:ws-arch:" + user,
		"storage-lease-expired:ws:reaper", "delete:ws:reaper", "delete:ws-arch:reaper", "delete:gold:reaper"} {
		if !strings.Contains(joined, want) {
			t.Errorf("events lack %s:\n%s", want, joined)
		}
	}
	var streamed int
	for streamed < len(evs) && stream.Scan() {
		if strings.HasPrefix(stream.Text(), "data: ") {
			streamed++
		}
	}
	if streamed != len(evs) {
		t.Errorf("event stream delivered %d events, the log holds %d", streamed, len(evs))
	}
	d.stop()
}

// followEvents opens the daemon's event stream.
func followEvents(t *testing.T, d *daemon) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.url+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+d.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %s", resp.Status)
	}
	return resp
}

// TestCleanupFreesWhatItSays applies cleanup on a tree of shared layers in
// a daemon and compares the bytes it reports with what the layers dir lost.
func TestCleanupFreesWhatItSays(t *testing.T) {
	requireTools(t)
	img := makeImage(t, t.TempDir())
	data := t.TempDir()
	d := startDaemon(t, data)
	d.ok("template", "import", "linux", "--disk", img)
	d.ok("config", "create", "root", "--vm", "a=linux", "--vm", "b=linux")
	root := d.config("root")
	qemuIO(t, root.VMs[0].Disks[0].Path, "write -P 0x01 0 3M")
	d.ok("config", "clone", "root", "mid")
	mid := d.config("mid")
	qemuIO(t, mid.VMs[0].Disks[0].Path, "write -P 0x02 4M 5M")
	qemuIO(t, mid.VMs[1].Disks[0].Path, "write -P 0x03 4M 2M")
	d.ok("config", "clone", "mid", "leaf1")
	d.ok("config", "clone", "mid", "leaf2")
	qemuIO(t, d.config("leaf1").VMs[0].Disks[0].Path, "write -P 0x04 12M 1M")
	d.ok("library", "capture", "leaf2", "entry")
	for _, n := range []string{"mid", "leaf1", "leaf2"} {
		d.ok("config", "lease", n, "--storage", "1s")
	}
	d.ok("config", "lease", "entry", "--storage", "1s")
	time.Sleep(1200 * time.Millisecond)

	layerBytes := func() int64 {
		files, _ := filepath.Glob(filepath.Join(data, "layers", "*"))
		var n int64
		for _, f := range files {
			st, err := os.Stat(f)
			if err == nil {
				n += st.Sys().(*syscall.Stat_t).Blocks * 512
			}
		}
		return n
	}
	var view, done struct {
		Items []struct {
			Name    string `json:"name"`
			Deleted bool   `json:"deleted"`
		} `json:"items"`
		Frees int64 `json:"frees"`
		Freed int64 `json:"freed"`
	}
	d.json(&view, "cleanup")
	if len(view.Items) != 4 {
		t.Fatalf("cleanup view: %+v", view)
	}
	before := layerBytes()
	d.json(&done, "cleanup", "--apply")
	freed := before - layerBytes()
	if done.Freed != freed || done.Freed != view.Frees {
		t.Errorf("cleanup said it frees %d (view %d); the layers dir lost %d", done.Freed, view.Frees, freed)
	}
	qemuIO(t, d.config("root").VMs[0].Disks[0].Path, "read -P 0x01 0 3M")
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
	d.stop()
}

// TestDeployLeaseUndeploysRealGuest runs a real guest whose deployment
// lease runs out: the daemon's reaper suspends it (the default on-expiry
// action, save-state), and the next deploy resumes it.
func TestDeployLeaseUndeploysRealGuest(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	t.Cleanup(func() { killLeftovers(data) })
	d := startDaemonArgv(t, data, ns.exec(binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--reap-interval", "300ms", "--accel", "tcg"))
	d.wrap = ns.exec
	deployFixture(t, d, guest, "10.73.0.0/24", "10.73.0.10-10.73.0.50")
	d.ok("config", "create", "s", "--vm", "a=kguest,net=lan")

	var c struct {
		State string `json:"state"`
		Lease struct {
			DeployLeaseSeconds int64  `json:"deploy_lease_seconds"`
			DeployExpires      string `json:"deploy_expires"`
		} `json:"lease"`
		VMs []struct {
			State string `json:"state"`
		} `json:"vms"`
	}
	d.json(&c, "config", "deploy", "s", "--deploy-lease", "1h")
	if c.State != "deployed" || c.Lease.DeployLeaseSeconds != 3600 || c.Lease.DeployExpires == "" {
		t.Fatalf("deploy with a lease: %+v", c)
	}
	ip := ipsOf(d.config("s"))[0]
	ns.waitGuest(t, ip, 90*time.Second)
	before := ns.waitGuest(t, ip, 10*time.Second)

	// Shorten the lease: the reaper undeploys within a pass or two.
	d.ok("config", "lease", "s", "--deploy", "1s")
	deadline := time.Now().Add(60 * time.Second)
	for {
		c.Lease.DeployExpires = "" // omitted when zero: not overwritten by a decode
		d.json(&c, "config", "show", "s")
		// The lease is cleared by the undeploy's event, a moment after
		// the state changes.
		if c.State == "undeployed" && c.Lease.DeployExpires == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s (lease %+v) a minute after the deployment lease ran out; events:\n%s", c.State, c.Lease, d.ok("events"))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if c.VMs[0].State != "saved" || c.Lease.DeployExpires != "" {
		t.Errorf("after the lease: VM %s, lease %+v; want saved and no running lease", c.VMs[0].State, c.Lease)
	}
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU left after the lease ran out: %v", pids)
	}
	var evs []eventJSON
	d.json(&evs, "events")
	var got []string
	for _, e := range evs {
		if e.Actor == "reaper" {
			got = append(got, e.Action+":"+e.Result)
		}
	}
	if strings.Join(got, " ") != "deploy-lease-expired:ok undeploy:ok" {
		t.Errorf("reaper events: %v", got)
	}

	// The next deploy resumes the guest where it was, with a new lease. It
	// names the lease: the configuration's own is still the 1s set above,
	// under which the reaper would suspend the guest again before a slow
	// machine's curl reaches it.
	d.json(&c, "config", "deploy", "s", "--deploy-lease", "1h")
	if c.Lease.DeployLeaseSeconds != 3600 {
		t.Fatalf("redeploy with a lease: %+v", c.Lease)
	}
	after := ns.waitGuest(t, ip, 30*time.Second)
	if cb, ca := atoi(before["counter"]), atoi(after["counter"]); ca < cb {
		t.Errorf("guest restarted instead of resuming: counter %s→%s", before["counter"], after["counter"])
	}
	d.ok("config", "undeploy", "s")
	d.stop()
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// TestKilledMidArchiveOperationRecovers SIGKILLs the daemon in the middle
// of each archive operation; the restarted daemon leaves nothing of it.
func TestKilledMidArchiveOperationRecovers(t *testing.T) {
	requireTools(t)
	img := makeImage(t, t.TempDir())
	out := t.TempDir()
	for _, c := range []struct {
		fault string
		args  []string
	}{
		{"archive:convert", []string{"archive", "create", "web", "arch2", "--detach"}},
		{"archive:commit", []string{"archive", "create", "web", "arch2", "--detach"}},
		{"restore:commit", []string{"archive", "restore", "arch", "back", "--detach"}},
		// No export: it is a download, which writes nothing on the server.
		{"archive-import:check", []string{"archive", "import", filepath.Join(out, "arch.tar"), "--name", "copy", "--detach"}},
		{"delete-archive:x", []string{"archive", "delete", "arch"}}, // no pause: a plain delete
	} {
		t.Run(strings.ReplaceAll(c.fault, ":", "-"), func(t *testing.T) {
			data := t.TempDir()
			d0 := startDaemon(t, data)
			d0.ok("template", "import", "linux", "--disk", img)
			d0.ok("config", "create", "web", "--vm", "app=linux")
			d0.ok("archive", "create", "web", "arch")
			if _, err := os.Stat(filepath.Join(out, "arch.tar")); err != nil {
				d0.ok("archive", "export", "arch", filepath.Join(out, "arch.tar"))
			}
			before := entriesIn(filepath.Join(data, "archive"))
			d0.stop()

			d := startDaemon(t, data, "STAGEHAND_TEST_FAULT="+c.fault+"=pause")
			cli := exec.Command(binary, append([]string{"--server", d.url, "--token-file", d.tokenFile()}, c.args...)...)
			if err := cli.Start(); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(c.fault, ":x") {
				cli.Wait()
			} else {
				d.waitLog("test fault: pausing", 30*time.Second)
			}
			d.kill()
			cli.Wait()

			d2 := startDaemon(t, data)
			after := entriesIn(filepath.Join(data, "archive"))
			var archives []archiveJSON
			d2.json(&archives, "archive", "list")
			switch {
			case strings.HasPrefix(c.fault, "delete-archive"):
				if len(after) != 0 || len(archives) != 0 {
					t.Errorf("after delete: dirs %v, archives %+v", after, archives)
				}
			default:
				if strings.Join(after, " ") != strings.Join(before, " ") || len(archives) != 1 {
					t.Errorf("archive dirs %v (before %v), archives %+v: want the interrupted operation gone", after, before, archives)
				}
			}
			d2.fails(3, "not found", "config", "show", "back")
			if left, _ := filepath.Glob(filepath.Join(out, ".x.tar*")); len(left) != 0 {
				t.Errorf("export left %v", left)
			}
			if _, err := os.Stat(filepath.Join(out, "x.tar")); err == nil {
				t.Errorf("an interrupted export published its bundle")
			}
			if r := d2.run("doctor"); r.code != 0 {
				t.Errorf("doctor after recovery: %s%s", r.stdout, r.stderr)
			}
			d2.stop()
		})
	}
}

// processesMentioning returns the pids of live processes with s in their
// command line (a zombie's command line is empty).
func processesMentioning(s string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			if pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestKilledMidFullCloneLeavesNothing is the review's reproduction: the
// daemon is SIGKILLed while qemu-img convert writes a full clone of a
// chain holding a few hundred MiB. The qemu-img child must die with the
// daemon (it used to go on writing), and the restarted daemon must leave
// no temporary or unreferenced file in layers/, with doctor clean.
func TestKilledMidFullCloneLeavesNothing(t *testing.T) {
	requireTools(t)
	data := t.TempDir()
	layers := filepath.Join(data, "layers")
	src := filepath.Join(t.TempDir(), "big.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", src, "1G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	qemuIO(t, src, "write -P 0x11 0 200M") // the rest stays sparse
	d := startDaemon(t, data)
	t.Cleanup(func() {
		for _, pid := range processesMentioning(layers) {
			syscall.Kill(pid, syscall.SIGKILL) // a surviving child of ours, by pid
		}
	})
	d.ok("template", "import", "big", "--disk", src)
	d.ok("config", "create", "c1", "--vm", "vm1=big")
	qemuIO(t, d.config("c1").VMs[0].Disks[0].Path, "write -P 0x22 300M 200M")
	d.ok("config", "clone", "c1", "c2") // freezes that layer: a chain of three
	qemuIO(t, d.config("c1").VMs[0].Disks[0].Path, "write -P 0x33 600M 200M")

	d.ok("config", "clone", "c1", "f1", "--mode", "full", "--detach")
	var convert []int
	deadline := time.Now().Add(30 * time.Second)
	for len(convert) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("qemu-img convert never ran; daemon log:\n%s", readFile(d.log))
		}
		for _, pid := range processesMentioning(layers) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(b, []byte("convert")) {
				convert = append(convert, pid)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let it write some of the new base
	d.kill()

	// The child goes with its parent at once, not when it is done: 600
	// MiB take qemu-img about a second here, so a child that outlived the
	// daemon would still be running (and its output growing) a quarter
	// of a second later.
	killed := time.Now()
	for len(processesMentioning(layers)) > 0 {
		if time.Since(killed) > 250*time.Millisecond {
			t.Fatalf("qemu-img still runs %v after the daemon was killed: pids %v", time.Since(killed), processesMentioning(layers))
		}
		time.Sleep(5 * time.Millisecond)
	}
	tempSizes := func() string {
		var out []string
		for _, n := range entriesIn(layers) {
			if st, err := os.Stat(filepath.Join(layers, n)); err == nil && strings.HasSuffix(n, ".tmp") {
				out = append(out, fmt.Sprintf("%s:%d", n, st.Size()))
			}
		}
		return strings.Join(out, " ")
	}
	before := tempSizes()
	time.Sleep(300 * time.Millisecond)
	if after := tempSizes(); after != before {
		t.Errorf("the new base still grows after the kill: %s, then %s", before, after)
	}
	var temps []string
	for _, n := range entriesIn(layers) {
		if strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp") {
			temps = append(temps, n)
		}
	}
	if len(temps) == 0 {
		t.Fatalf("no temporary file after the kill: the conversion was not interrupted (layers: %v)", entriesIn(layers))
	}
	t.Logf("killed during qemu-img convert (pid %v), leaving %v", convert, temps)

	d2 := startDaemon(t, data)
	d2.fails(3, "not found", "config", "show", "f1")
	referenced := map[string]bool{}
	for _, name := range []string{"c1", "c2"} {
		for _, vm := range d2.config(name).VMs {
			for _, disk := range vm.Disks {
				for _, p := range disk.Chain {
					referenced[filepath.Base(p)] = true
				}
			}
		}
	}
	for _, n := range entriesIn(layers) {
		if !referenced[n] {
			t.Errorf("layers/%s left after recovery (referenced: %v)", n, referenced)
		}
	}
	if r := d2.run("doctor"); r.code != 0 || strings.Contains(r.stdout, "KIND") {
		t.Errorf("doctor after recovery: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d2.stop()
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
