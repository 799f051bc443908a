package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// instantFixture imports the kernel-boot test guest as template "iguest"
// with memMiB of memory and makes network lan; then a deployed 3-VM
// configuration "src" on it, every guest answering. It returns src's
// addresses.
func instantFixture(t *testing.T, d *daemon, ns *netns, guest, subnet, pool string, memMiB int) []string {
	t.Helper()
	cmdline, err := os.ReadFile(filepath.Join(guest, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	d.ok("template", "import", "iguest", "--disk", filepath.Join(guest, "data.qcow2"), "--memory", strconv.Itoa(memMiB),
		"--kernel", filepath.Join(guest, "vmlinuz"), "--initrd", filepath.Join(guest, "initrd.img"),
		"--cmdline", strings.TrimSpace(string(cmdline)))
	d.ok("network", "create", "lan", "--subnet", subnet, "--pool", pool)
	d.ok("config", "create", "src", "--vm", "a=iguest,net=lan", "--vm", "b=iguest,net=lan", "--vm", "c=iguest,net=lan")
	d.ok("config", "deploy", "src")
	ips := ipsOf(d.config("src"))
	for _, ip := range ips {
		ns.waitGuest(t, ip, 120*time.Second)
	}
	return ips
}

// externalIPs returns the external address of each VM of a fenced
// deployment (first NIC).
func externalIPs(t *testing.T, c configJSON) []string {
	t.Helper()
	var out []string
	for _, vm := range c.VMs {
		if vm.NICs[0].ExternalIP == "" {
			t.Fatalf("%s/%s has no external address: %+v", c.Name, vm.Name, vm.NICs[0])
		}
		out = append(out, vm.NICs[0].ExternalIP)
	}
	return out
}

// flushNeighbours empties the namespace's neighbour table. External
// addresses are reused across deploys and each fence has new MACs: an
// entry the namespace still holds for the last holder would cost its
// neighbour-unreachability detection (seconds to tens of seconds) before
// the new holder answers.
func flushNeighbours(t *testing.T, ns *netns) {
	t.Helper()
	flush := ns.exec("ip", "neigh", "flush", "all")
	if out, err := exec.Command(flush[0], flush[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ip neigh flush: %v %s", err, out)
	}
}

// deployAll deploys every configuration in names at once with args and
// returns how long until the last `config deploy` returned.
func deployAll(t *testing.T, d *daemon, names []string, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	errs := make([]string, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := d.run(append([]string{"config", "deploy", n}, args...)...); r.code != 0 {
				errs[i] = fmt.Sprintf("deploy %s: exit %d: %s", n, r.code, r.stderr)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return took
}

// TestInstantFencedCopies: a deployed 3-VM configuration whose guests'
// in-memory counters have run a while is cloned --with-state five times;
// an unfenced deploy of a copy is refused saying why; the five are
// deployed fenced at once and each guest answers on its own external
// address (asked from the daemon's namespace) with its internal address,
// the source's boot id (resumed, not booted) and a counter that went on
// from the value it had when its copy was taken; a write in one copy is
// not seen in another, nor in the source.
func TestInstantFencedCopies(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	d := startDaemonIn(t, ns, t.TempDir())
	ips := instantFixture(t, d, ns, guest, "10.87.0.0/24", "10.87.0.10-10.87.0.30", 256)
	for _, ip := range ips {
		if kv, err := ns.guest(ip, "/write?marker=from-src"); err != nil || kv["write"] != "ok" {
			t.Fatalf("write on %s: %v %v", ip, kv, err)
		}
	}
	time.Sleep(time.Second) // the counters go on
	boots := make([]string, len(ips))
	atClone := map[string][]int{}
	var copies []string
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("copy%d", i)
		var counters []int
		for j, ip := range ips {
			kv := ns.waitGuest(t, ip, 10*time.Second)
			boots[j] = kv["boot"]
			n, _ := strconv.Atoi(kv["counter"])
			counters = append(counters, n)
		}
		start := time.Now()
		d.ok("config", "clone", "src", name, "--with-state")
		t.Logf("config clone src %s --with-state: %v", name, time.Since(start).Round(time.Millisecond))
		atClone[name] = counters
		copies = append(copies, name)
	}
	src := d.config("src")
	if c := d.config("copy1"); c.VMs[0].State != "saved" || c.VMs[0].NICs[0].MAC != src.VMs[0].NICs[0].MAC {
		t.Errorf("copy1: VM state %s, MAC %s; want saved with the source's MAC %s", c.VMs[0].State, c.VMs[0].NICs[0].MAC, src.VMs[0].NICs[0].MAC)
	}
	if r := d.run("config", "deploy", "copy1"); r.code == 0 || !strings.Contains(r.stderr, "--fenced") || !strings.Contains(r.stderr, "MACs") {
		t.Errorf("unfenced deploy of an instant copy: exit %d, %q; want refused, saying it has src's MACs and to deploy --fenced", r.code, r.stderr)
	}

	took := deployAll(t, d, copies, "--fenced")
	t.Logf("5 instant copies (15 VMs) deployed fenced at once in %v", took.Round(time.Millisecond))
	seen := map[string]string{}
	for _, name := range copies {
		c := d.config(name)
		for j, ext := range externalIPs(t, c) {
			if other, dup := seen[ext]; dup {
				t.Errorf("external %s given to %s and %s", ext, other, name)
			}
			seen[ext] = name
			kv := ns.waitGuest(t, ext, 60*time.Second)
			n, _ := strconv.Atoi(kv["counter"])
			if !strings.Contains(kv["ip"], ips[j]) || kv["boot"] != boots[j] || n < atClone[name][j] || kv["marker"] != "from-src" {
				t.Errorf("%s/%s on %s: ip %q boot %s counter %d marker %q; want ip %s, boot %s (resumed), counter from %d on, marker from-src",
					name, c.VMs[j].Name, ext, kv["ip"], kv["boot"], n, kv["marker"], ips[j], boots[j], atClone[name][j])
			}
		}
	}
	// Each copy's writes are its own.
	ext1, ext2 := externalIPs(t, d.config("copy1")), externalIPs(t, d.config("copy2"))
	if kv, err := ns.guest(ext1[0], "/write?marker=copy1-only"); err != nil || kv["write"] != "ok" {
		t.Fatalf("write in copy1: %v %v", kv, err)
	}
	if kv := ns.waitGuest(t, ext1[0], 10*time.Second); kv["marker"] != "copy1-only" {
		t.Errorf("copy1 reads marker %q after its write", kv["marker"])
	}
	if kv := ns.waitGuest(t, ext2[0], 10*time.Second); kv["marker"] != "from-src" {
		t.Errorf("copy2 reads marker %q; want from-src (copy1's write is copy1's)", kv["marker"])
	}
	if kv := ns.waitGuest(t, ips[0], 10*time.Second); kv["marker"] != "from-src" || kv["boot"] != boots[0] {
		t.Errorf("the source reads marker %q boot %s; want from-src, its own boot %s", kv["marker"], kv["boot"], boots[0])
	}
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor with instant copies: %s%s", r.stdout, r.stderr)
	}
}

// BenchmarkInstantCopy times, from `config deploy --fenced` until every
// guest answers on its external address (asked from the daemon's
// namespace), a 3-VM instant copy (clone --with-state of a deployed
// configuration: resumed) and, in the same iteration, the same copy
// deployed fenced again after an undeploy without state (booted): the
// ratio is what resuming saves (goal ≤ 0.2; under 1.5 s absolute).
// STAGEHAND_INSTANT_MEM sets the guests' memory (MiB, default 256).
func BenchmarkInstantCopy(b *testing.B) {
	var instant, cold time.Duration
	var n int
	asTest(b, func(t *testing.T) {
		requireVMs(t)
		guest := guestImages(t)
		ns := newNetns(t)
		d := startDaemonIn(t, ns, t.TempDir())
		instantFixture(t, d, ns, guest, "10.88.0.0/24", "10.88.0.10-10.88.0.30", instantMem(t))
		timed := func(name string) time.Duration {
			flushNeighbours(t, ns)
			start := time.Now()
			d.ok("config", "deploy", name, "--fenced")
			cmd := time.Since(start)
			waitAllHTTP(t, ns, externalIPs(t, d.config(name)), 3*time.Minute)
			t.Logf("%s: config deploy --fenced returned after %v, every guest answered after %v", name, cmd.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			return time.Since(start)
		}
		for b.Loop() {
			name := fmt.Sprintf("copy%d", n)
			d.ok("config", "clone", "src", name, "--with-state")
			i := timed(name)
			d.ok("config", "undeploy", name)
			c := timed(name)
			d.ok("config", "undeploy", name)
			d.ok("config", "delete", name)
			t.Logf("iteration %d: instant %v, cold %v", n, i.Round(time.Millisecond), c.Round(time.Millisecond))
			instant += i
			cold += c
			n++
		}
	})
	b.ReportMetric(ms(instant, n), "ms-instant-3vm/op")
	b.ReportMetric(ms(cold, n), "ms-cold-3vm/op")
	b.ReportMetric(float64(instant)/float64(cold), "instant/cold")
}

// BenchmarkInstantCopies20 deploys STAGEHAND_INSTANT_COPIES (default 20)
// fenced instant copies of one 3-VM configuration at once, all sharing
// one saved state (copies of one undeployed copy), and waits until every
// guest answers on its external address; it reports the time and the
// QEMU processes' total resident memory.
func BenchmarkInstantCopies20(b *testing.B) {
	var took time.Duration
	var rss int64
	var n, copies int
	asTest(b, func(t *testing.T) {
		requireVMs(t)
		guest := guestImages(t)
		ns := newNetns(t)
		d := startDaemonIn(t, ns, t.TempDir())
		srcIPs := instantFixture(t, d, ns, guest, "10.91.0.0/24", "10.91.0.10-10.91.0.150", instantMem(t))
		copies = 20
		if v, err := strconv.Atoi(os.Getenv("STAGEHAND_INSTANT_COPIES")); err == nil && v > 0 {
			copies = v
		}
		var boots []string
		for _, ip := range srcIPs {
			boots = append(boots, ns.waitGuest(t, ip, 10*time.Second)["boot"])
		}
		d.ok("config", "clone", "src", "saved", "--with-state")
		for b.Loop() {
			var names []string
			for i := range copies {
				name := fmt.Sprintf("c%d-%d", n, i)
				d.ok("config", "clone", "saved", name, "--with-state")
				names = append(names, name)
			}
			start := time.Now()
			deployAll(t, d, names, "--fenced")
			var ips []string
			for _, name := range names {
				ips = append(ips, externalIPs(t, d.config(name))...)
			}
			waitAllHTTP(t, ns, ips, 10*time.Minute)
			took += time.Since(start)
			var r int64
			for _, name := range names {
				var c deployedJSON
				d.json(&c, "config", "show", name)
				for _, vm := range c.VMs {
					r += rssKiB(t, vm.PID)
				}
			}
			rss += r
			t.Logf("iteration %d: %d copies (%d guests) answering after %v, QEMU RSS %d MiB", n, copies, len(ips), time.Since(start).Round(time.Millisecond), r/1024)
			checkOwnWrites(t, ns, ips, srcIPs, boots)
			for _, name := range names {
				d.ok("config", "undeploy", name)
				d.ok("config", "delete", name)
			}
			n++
		}
	})
	b.ReportMetric(ms(took, n), "ms-all-answer/op")
	b.ReportMetric(float64(rss)/1024/float64(n), "MiB-qemu-rss")
	b.ReportMetric(float64(copies), "copies")
}

func instantMem(t *testing.T) int {
	if v, err := strconv.Atoi(os.Getenv("STAGEHAND_INSTANT_MEM")); err == nil && v > 0 {
		return v
	}
	return 256
}

// checkOwnWrites writes a marker naming each guest (ips: the copies'
// external addresses, three per copy in VM order) into its disk, all at
// once, then reads every guest back: each must answer on its own external
// address with its VM's internal address (srcIPs, kept inside its fence),
// the boot id of the saved state (boots: resumed, not booted) and only its
// own marker. Sixty guests asked at once on two cores each answer in
// seconds (a shell handler that forks): every request may take a minute.
func checkOwnWrites(t *testing.T, ns *netns, ips, srcIPs, boots []string) {
	t.Helper()
	marker := func(i int) string { return fmt.Sprintf("copy%d-vm%d", i/len(srcIPs), i%len(srcIPs)) }
	each := func(f func(i int, ip string) error) {
		errs := make([]error, len(ips))
		var wg sync.WaitGroup
		for i, ip := range ips {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i, ip)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}
	each(func(i int, ip string) error {
		if kv, err := ns.guestWithin(ip, "/write?marker="+marker(i), time.Minute); err != nil || kv["write"] != "ok" {
			return fmt.Errorf("write %s on %s: %v %v", marker(i), ip, kv, err)
		}
		return nil
	})
	each(func(i int, ip string) error {
		kv, err := ns.guestWithin(ip, "/", time.Minute)
		j := i % len(srcIPs)
		if err != nil || kv["marker"] != marker(i) || kv["boot"] != boots[j] || !strings.Contains(kv["ip"], srcIPs[j]) {
			return fmt.Errorf("guest at %s: %v %v; want marker %s, boot %s (resumed), internal address %s", ip, kv, err, marker(i), boots[j], srcIPs[j])
		}
		return nil
	})
	if !t.Failed() {
		t.Logf("each of the %d guests wrote its own marker and read back only its own, with its internal address and the saved boot id", len(ips))
	}
}
