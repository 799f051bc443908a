package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

type chainLayerJSON struct {
	Path     string `json:"path"`
	Frozen   bool   `json:"frozen"`
	Snapshot string `json:"snapshot"`
	Shortcut *struct {
		RunTop    string `json:"run_top"`
		RunBottom string `json:"run_bottom"`
		Layers    int    `json:"layers"`
	} `json:"shortcut"`
}

type shortcutReportJSON struct {
	Built []struct {
		Path   string `json:"path"`
		Layers int    `json:"layers"`
	} `json:"built"`
	Rebased  []string `json:"rebased"`
	Switched []string `json:"switched"`
	Released []string `json:"released"`
}

// readBench asks the guest at ip to read mib MiB of its disk in 4 KiB
// O_DIRECT requests (GET /readbench) and returns the throughput in MiB/s.
func readBench(t *testing.T, ns *netns, ip string, mib int) float64 {
	t.Helper()
	argv := ns.exec("curl", "-sf", "--max-time", "300", fmt.Sprintf("http://%s/readbench?mib=%d", ip, mib))
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("readbench on %s: %v\n%s", ip, err, out)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	start, err1 := strconv.ParseFloat(kv["start"], 64)
	end, err2 := strconv.ParseFloat(kv["end"], 64)
	if kv["readbench"] != "ok" || err1 != nil || err2 != nil || end <= start {
		t.Fatalf("readbench on %s: %q", ip, out)
	}
	return float64(mib) / (end - start)
}

// patientGuest asks the guest at ip for path until it answers or timeout
// passes, giving each request a minute: with both cores shared by other
// tests' guests, a TCG guest's answer (a shell forking a dozen times) can
// take longer than waitGuest's 3 s for minutes on end.
func patientGuest(t *testing.T, ns *netns, ip, path string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		argv := ns.exec("curl", "-sf", "--max-time", "60", "http://"+ip+path)
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err == nil {
			kv := map[string]string{}
			for _, line := range strings.Split(string(out), "\n") {
				if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
					kv[k] = v
				}
			}
			return kv
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s never answered %s: %v\n%s", ip, path, err, ns.diagnose())
		}
		time.Sleep(time.Second)
	}
}

// readRatio measures the read throughput of the guest at ip against the
// guest at ref, alternately, rounds times (TCG shares two cores with
// other tests: alternating puts both under the same load), and returns
// the median of the per-round ratios and the medians of both.
func readRatio(t *testing.T, ns *netns, ip, ref string, mib, rounds int) (ratio, got, base float64) {
	t.Helper()
	ratios, gots, bases := readRounds(t, ns, ip, ref, mib, rounds)
	return median(ratios), median(gots), median(bases)
}

// readRounds is readRatio's rounds: each round's ratio and both
// throughputs.
func readRounds(t *testing.T, ns *netns, ip, ref string, mib, rounds int) (ratios, gots, bases []float64) {
	t.Helper()
	for range rounds {
		b := readBench(t, ns, ref, mib)
		g := readBench(t, ns, ip, mib)
		ratios, gots, bases = append(ratios, g/b), append(gots, g), append(bases, b)
	}
	return ratios, gots, bases
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestShortcutSwitchesRunningGuest: a guest's disk is taken 28 snapshots
// deep (a marker written before each), so its chain is 30 layers, the
// chain limit, and deployed beside a guest 2 deep; `disk shortcut` builds one shortcut for the 28
// frozen layers and switches the running guest onto it live: the guest
// keeps answering with its marker, its disk reads through 3 layers, its
// writes go on; after an undeploy and a deploy its data is intact and
// disk chain shows 3 layers read, 30 of clone history, and a revert to a
// snapshot in the run shows that snapshot's marker. The guest's read
// throughput against the depth-2 guest's at depth 2, 30 and 30 with the
// shortcut is logged (the benchmark of issue 15, docs/benchmarks.md) and
// the last must meet the goal of 0.8.
func TestShortcutSwitchesRunningGuest(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	t.Cleanup(func() { killLeftovers(data) })
	// The background pass is off: the test runs it when it wants.
	d := startDaemonArgv(t, data, ns.exec(binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--accel", "tcg", "--shortcut-depth", "0"))
	d.wrap = ns.exec
	deployFixture(t, d, guest, "10.94.0.0/24", "10.94.0.10-10.94.0.50")
	// flat stays 2 deep (its top on the template): the reference every
	// throughput is measured against, in the same rounds.
	d.ok("config", "create", "flat", "--vm", "a=kguest,net=lan")
	d.ok("config", "create", "deep", "--vm", "a=kguest,net=lan")
	d.ok("config", "deploy", "flat")
	d.ok("config", "deploy", "deep")
	ref, ip := ipsOf(d.config("flat"))[0], ipsOf(d.config("deep"))[0]
	patientGuest(t, ns, ref, "/", 240*time.Second)
	patientGuest(t, ns, ip, "/", 240*time.Second)
	const mib, rounds = 16, 5
	sameRatio, _, _ := readRatio(t, ns, ip, ref, mib, rounds)

	chain := func() []chainLayerJSON {
		t.Helper()
		var ls []chainLayerJSON
		d.json(&ls, "disk", "chain", "deep", "a")
		return ls
	}
	// Depth by snapshots of the undeployed configuration, a marker
	// written from the host at each level: 28 live snapshots would cost
	// 28 pauses of a TCG guest for the same chain. (A live snapshot's top
	// switches live too: hypervisor.TestSwitchBackingAfterLiveSnapshots.)
	d.ok("config", "undeploy", "deep")
	for i := 1; i <= 28; i++ {
		top := d.config("deep").VMs[0].Disks[0].Path
		if out, err := exec.Command(filepath.Join("..", "scripts", "guest-marker.sh"), "write", top, fmt.Sprintf("level-%d", i)).CombinedOutput(); err != nil {
			t.Fatalf("guest-marker.sh write %s: %v\n%s", top, err, out)
		}
		d.ok("snapshot", "create", "deep", fmt.Sprintf("s%d", i))
	}
	before := chain()
	if len(before) != 30 {
		t.Fatalf("after 28 snapshots the chain is %d layers; want 30", len(before))
	}
	d.ok("config", "deploy", "deep")
	if kv := patientGuest(t, ns, ip, "/", 240*time.Second); kv["marker"] != "level-28" {
		t.Fatalf("guest at depth 30: marker %q, want level-28", kv["marker"])
	}
	deepRatio, deepGot, deepBase := readRatio(t, ns, ip, ref, mib, rounds)

	began := time.Now()
	var rep shortcutReportJSON
	d.json(&rep, "disk", "shortcut", "deep")
	took := time.Since(began)
	if len(rep.Built) != 1 || rep.Built[0].Layers != 28 || len(rep.Switched) != 1 {
		t.Fatalf("disk shortcut: %+v; want one shortcut for 28 layers and the running disk switched", rep)
	}
	if kv := patientGuest(t, ns, ip, "/", 10*time.Second); kv["marker"] != "level-28" {
		t.Errorf("guest after the live switch: marker %q, want level-28", kv["marker"])
	}
	after := chain()
	if len(after) != 3 || after[1].Shortcut == nil || after[1].Shortcut.Layers != 28 || after[1].Path != rep.Built[0].Path {
		t.Fatalf("chain after the switch: %+v; want top, the shortcut (28 layers), base", after)
	}
	// Under a parallel test run one round swings by 20 % either way (the
	// two guests' ratio at the same depth, sameRatio, was 1.19 in one CI
	// run): below the goal, the rounds are measured again, up to twice,
	// and the median is taken over all of them. A slow read path stays
	// slow however often it is measured.
	sr, sg, sb := readRounds(t, ns, ip, ref, mib, rounds)
	for more := 0; median(sr) < 0.8 && more < 2; more++ {
		r, g, b := readRounds(t, ns, ip, ref, mib, rounds)
		sr, sg, sb = append(sr, r...), append(sg, g...), append(sb, b...)
	}
	shortRatio, shortGot, shortBase := median(sr), median(sg), median(sb)
	t.Logf("guest read throughput (%d MiB of 4 KiB O_DIRECT reads through the deployed guest, median of %d rounds alternating with a depth-2 guest, %d through the shortcut): "+
		"both at depth 2: ratio %.2f; depth 30: %.2f MiB/s against %.2f, ratio %.2f; depth 30 through the shortcut (3 layers read): %.2f MiB/s against %.2f, ratio %.2f; disk shortcut took %v",
		mib, rounds, len(sr), sameRatio, deepGot, deepBase, deepRatio, shortGot, shortBase, shortRatio, took.Round(time.Millisecond))
	t.Logf("disk chain after the shortcut:\n%s", d.ok("disk", "chain", "deep", "a"))
	if shortRatio < 0.8 {
		t.Errorf("read throughput through the shortcut: %.2f of the depth-2 guest's; the goal is at least 0.8", shortRatio)
	}

	// A write through the shortcut chain.
	if kv := patientGuest(t, ns, ip, "/write?marker=after-switch", 240*time.Second); kv["write"] != "ok" {
		t.Fatalf("write after the switch: %v", kv)
	}
	d.ok("config", "undeploy", "deep")
	d.ok("config", "deploy", "deep")
	if kv := patientGuest(t, ns, ip, "/", 240*time.Second); kv["marker"] != "after-switch" {
		t.Errorf("guest after undeploy and deploy: marker %q, want after-switch", kv["marker"])
	}
	if ls := chain(); len(ls) > 10 || len(ls) != 3 {
		t.Errorf("chain after the redeploy: %d layers; want 3 (under the default shortcut depth of 10)", len(ls))
	}
	// Every snapshot's point is still there: revert to s14 shows its
	// marker (the shortcut did not replace what the snapshots hold).
	d.ok("snapshot", "revert", "deep", "s14")
	if kv := patientGuest(t, ns, ip, "/", 240*time.Second); kv["marker"] != "level-14" {
		t.Errorf("guest after revert to s14: marker %q, want level-14", kv["marker"])
	}
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
	d.ok("config", "undeploy", "deep")
	d.ok("config", "undeploy", "flat")
}
