package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// placementJSON is a deploy's answer with its placement.
type placementJSON struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Host      string `json:"host"`
	Placement *struct {
		Host       string `json:"host"`
		Moved      bool   `json:"moved"`
		MovedBytes int64  `json:"moved_bytes"`
		Verdicts   []struct {
			Host string `json:"host"`
			Fits bool   `json:"fits"`
			Text string `json:"text"`
		} `json:"verdicts"`
	} `json:"placement"`
}

// TestPlacementOverThreeHosts (issue 13): three hosts on one PostgreSQL.
// Six configurations of two sizes, all made on h1, are deployed from h1
// and land where the placement rules say (fits; most of the chain held;
// then by name), moving with only what the target lacks; --explain prints
// every host's verdict; a seventh fits nowhere and the refusal names
// every host. Then a linked clone whose chain lives on h1, deployed with
// --host h2, starts on h2 after h2 pulled only the layers it lacked (the
// bytes moved are their sizes, in the answer and in h2's log) and its
// guest answers with the marker written on h1.
func TestPlacementOverThreeHosts(t *testing.T) {
	guest := guestImages(t)
	c := newCluster(t, 3)
	h1 := c.host(1)
	t.Cleanup(func() {
		if t.Failed() {
			for i := 1; i <= 3; i++ {
				t.Logf("h%d's log:\n%s", i, c.host(i).logTail(25))
			}
		}
	})
	mem := c.hostList(1)["h1"].MemoryMiB
	for name, h := range c.hostList(1) {
		if h.MemoryMiB != mem {
			t.Fatalf("host %s has %d MiB, h1 %d: the test needs equal hosts", name, h.MemoryMiB, mem)
		}
	}
	// big takes 55 % of a host's memory, small 30 %: a host holds one
	// big and one small, or two small.
	big, small := mem*55/100, mem*30/100
	// BIOS-booted: its disk is the whole guest, so the bytes a move pulls
	// are layers only (a kernel template's boot files move too, once per
	// host: TestKernelBootConfigurationMovesToAnotherHost).
	for name, m := range map[string]int{"big": big, "small": small, "kg": 256} {
		h1.ok("template", "import", name, "--disk", filepath.Join(guest, "disk.qcow2"), "--memory", strconv.Itoa(m))
	}
	h1.ok("network", "create", "lan", "--subnet", "10.71.0.0/24", "--pool", "10.71.0.10-10.71.0.90")

	// (a) Where each goes, and why.
	plan := []struct{ name, tmpl, want string }{
		{"p1", "big", "h1"},   // h1 holds the chain
		{"p2", "big", "h2"},   // h1 is full; h2 and h3 would pull the same: by name
		{"p3", "small", "h1"}, // h1 still fits it and holds its base: no pull
		{"p4", "big", "h3"},   // only h3 has room
		{"p5", "small", "h2"}, // h2 and h3 would both pull small's base: by name
		{"p6", "small", "h3"}, // only h3 has room
	}
	for _, p := range plan {
		h1.ok("config", "create", p.name, "--vm", "vm="+p.tmpl+",net=lan")
	}
	for _, p := range plan {
		var got placementJSON
		h1.json(&got, "config", "deploy", p.name, "--explain")
		if got.State != "deployed" || got.Host != p.want || got.Placement == nil || got.Placement.Host != p.want {
			t.Fatalf("deploy %s: %s on %q, placement %+v; want deployed on %s", p.name, got.State, got.Host, got.Placement, p.want)
		}
		if len(got.Placement.Verdicts) != 3 {
			t.Errorf("deploy %s: verdicts %+v, want one per host", p.name, got.Placement.Verdicts)
		}
		if got.Placement.Moved != (p.want != "h1") {
			t.Errorf("deploy %s: moved=%v, want %v", p.name, got.Placement.Moved, p.want != "h1")
		}
		var lines []string
		for _, v := range got.Placement.Verdicts {
			lines = append(lines, v.Text)
		}
		t.Logf("%s (%s) -> %s, moved %d bytes:\n  %s", p.name, p.tmpl, p.want, got.Placement.MovedBytes, strings.Join(lines, "\n  "))
		// Its QEMU runs in the chosen host's namespace.
		if len(c.host(hostNumber(p.want)).ns.qemuPIDs(t)) == 0 {
			t.Errorf("deploy %s: no QEMU in %s's namespace", p.name, p.want)
		}
	}
	// The table form of --explain: one line per host, then the choice.
	h1.ok("config", "create", "p7", "--vm", "vm=small,net=lan")
	h1.ok("config", "create", "p8", "--vm", "vm=kg,net=lan")
	out := h1.ok("config", "deploy", "p8", "--explain")
	for _, h := range []string{"h1: ", "h2: ", "h3: ", "placed on "} {
		if !strings.Contains(out, h) {
			t.Errorf("deploy --explain output lacks %q:\n%s", h, out)
		}
	}
	h1.ok("config", "undeploy", "p8")

	// (c) Nothing fits: exit 5 (unavailable), and the one line names
	// every host and why.
	r := h1.run("config", "deploy", "p7")
	if r.code != 5 {
		t.Errorf("deploy p7 with no room: exit %d, want 5\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, h := range []string{"no host fits", "h1: no: needs", "h2: no: needs", "h3: no: needs"} {
		if !strings.Contains(r.stderr, h) {
			t.Errorf("deploy p7: %q does not say %q", r.stderr, h)
		}
	}
	for _, p := range plan {
		h1.ok("config", "undeploy", p.name)
	}

	// (b) A linked clone's chain on h1; h2 already holds the template's
	// base (a configuration moved there).
	h1.ok("config", "create", "other", "--vm", "vm=kg,net=lan")
	h1.ok("config", "move", "other", "--host", "h2")
	h1.ok("config", "create", "src", "--vm", "vm=kg,net=lan")
	h1.ok("config", "deploy", "src", "--host", "h1")
	ip := h1.config("src").VMs[0].NICs[0].IP
	h1.ns.waitGuest(t, ip, 120*time.Second)
	if _, err := h1.ns.guest(ip, "/write?marker=from-h1"); err != nil {
		t.Fatal(err)
	}
	h1.ok("config", "undeploy", "src")
	h1.ok("config", "clone", "src", "clone")
	// What h2 lacks: every file of the clone's chain that is not in its
	// data dir; their sizes, read on h1.
	var want int64
	var missing []string
	disk := h1.config("clone").VMs[0].Disks[0]
	top := filepath.Base(disk.Path)
	for _, p := range disk.Chain {
		base := filepath.Base(p)
		if _, err := os.Stat(filepath.Join(c.host(2).dataDir, "layers", base)); err == nil {
			continue
		}
		st, err := os.Stat(filepath.Join(h1.dataDir, "layers", base))
		if err != nil {
			t.Fatal(err)
		}
		want += st.Size()
		missing = append(missing, base)
	}
	if len(missing) != 2 {
		t.Fatalf("h2 lacks %v of the clone's chain, want the frozen top and the clone's top", missing)
	}
	var got placementJSON
	h1.json(&got, "config", "deploy", "clone", "--host", "h2")
	if got.State != "deployed" || got.Host != "h2" || got.Placement == nil || !got.Placement.Moved {
		t.Fatalf("deploy clone --host h2: %+v", got)
	}
	if got.Placement.MovedBytes != want {
		t.Errorf("moved %d bytes, want %d: the sizes of %v", got.Placement.MovedBytes, want, missing)
	}
	m := regexp.MustCompile(`msg="configuration adopted" config=clone from=h1 bytes=(\d+)`).FindStringSubmatch(c.host(2).logTail(2000))
	if m == nil || m[1] != strconv.FormatInt(want, 10) {
		t.Errorf("h2's log: adopted %v, want bytes=%d", m, want)
	}
	for _, base := range missing {
		if _, err := os.Stat(filepath.Join(c.host(2).dataDir, "layers", base)); err != nil {
			t.Errorf("h2 lacks %s after the move: %v", base, err)
		}
	}
	// The clone's top left h1; the frozen layer stays (src builds on it).
	if _, err := os.Stat(filepath.Join(h1.dataDir, "layers", top)); !os.IsNotExist(err) {
		t.Errorf("h1 still has the clone's top %s: %v", top, err)
	}
	cip := c.host(2).config("clone").VMs[0].NICs[0].IP
	if kv := c.host(2).ns.waitGuest(t, cip, 120*time.Second); kv["marker"] != "from-h1" {
		t.Errorf("the clone's guest on h2 says marker=%q, want from-h1", kv["marker"])
	}
	if len(c.host(1).ns.qemuPIDs(t)) != 0 {
		t.Errorf("QEMU still runs on h1")
	}
	c.host(2).ok("config", "undeploy", "clone")
}

func hostNumber(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "h"))
	if err != nil {
		panic(fmt.Sprintf("host name %q", name))
	}
	return n
}
