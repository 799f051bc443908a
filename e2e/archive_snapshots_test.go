package e2e

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSnapshotsTravelInBundles: a guest writes a marker at each level of a
// snapshot tree (the second level with state) and one after it, the
// configuration is undeployed --save-state, archived --with-snapshots
// (archive show lists the tree and the VM's saved state) and exported as
// a bundle, and the archive deleted; a bundle with a flipped byte in the
// VM's saved state is refused and leaves nothing; the good one is imported
// and restored. The restore draws the same tree and its VM is saved; while
// the archived configuration still holds the MACs an unfenced deploy is
// refused, and deployed fenced the guest resumes (same boot id, the
// current marker) on its external address; reverted to s2 it resumes
// s2's memory (s2's marker); reverted to s1 it boots with s1's marker.
// Deleting a snapshot and the configurations leaves a data dir the doctor
// finds clean.
func TestSnapshotsTravelInBundles(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	d := startDaemonIn(t, ns, t.TempDir())
	deployFixture(t, d, guest, "10.97.0.0/24", "10.97.0.10-10.97.0.50")
	d.ok("config", "create", "st", "--vm", "a=kguest,net=lan")
	d.ok("config", "deploy", "st")
	ip := ipsOf(d.config("st"))[0]
	ns.waitGuest(t, ip, 120*time.Second)
	write := func(marker string) {
		t.Helper()
		if kv, err := ns.guest(ip, "/write?marker="+marker); err != nil || kv["write"] != "ok" {
			t.Fatalf("write marker %s: %v %v", marker, kv, err)
		}
	}
	write("level-1")
	d.ok("snapshot", "create", "st", "s1")
	write("level-2")
	at2 := ns.waitGuest(t, ip, 10*time.Second)
	d.ok("snapshot", "create", "st", "s2", "--with-state")
	write("after-2")
	d.ok("config", "undeploy", "st", "--save-state")

	d.ok("archive", "create", "st", "arch", "--with-snapshots")
	var arch struct {
		Snapshots []struct {
			Name      string `json:"name"`
			Parent    string `json:"parent"`
			WithState bool   `json:"with_state"`
		} `json:"snapshots"`
		VMs []struct {
			SavedState bool `json:"saved_state"`
		} `json:"vms"`
	}
	d.json(&arch, "archive", "show", "arch")
	if len(arch.Snapshots) != 2 || arch.Snapshots[1].Parent != "s1" || !arch.Snapshots[1].WithState {
		t.Fatalf("archive snapshots %+v; want s1 and s2 (with state) on it", arch.Snapshots)
	}
	if len(arch.VMs) != 1 || !arch.VMs[0].SavedState {
		t.Fatalf("archive VMs %+v; want the VM's saved state carried", arch.VMs)
	}
	bundle := filepath.Join(t.TempDir(), "arch.tar")
	d.ok("archive", "export", "arch", bundle)
	// The archive is gone from here, as if it moved to another server;
	// the configuration stays, holding its MACs.
	d.ok("archive", "delete", "arch")

	good, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	r := bytes.NewReader(good)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no saved VM state in the bundle: %v", err)
		}
		if h.Name == "states/vm0.state" {
			bad[int64(len(good))-int64(r.Len())+h.Size/2] ^= 0x01
			break
		}
	}
	badFile := filepath.Join(t.TempDir(), "bad.tar")
	if err := os.WriteFile(badFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := d.run("archive", "import", badFile); res.code == 0 || !strings.Contains(res.stderr, "sha256") {
		t.Errorf("import of a bundle with a changed saved state: exit %d %s; want refused naming the checksum", res.code, res.stderr)
	}
	if es := entriesIn(filepath.Join(d.dataDir, "archive")); len(es) != 0 {
		t.Errorf("the refused import left %v", es)
	}

	d.ok("archive", "import", bundle)
	d.ok("archive", "restore", "arch", "back")
	var tree []snapshotJSON
	d.json(&tree, "snapshot", "list", "back")
	var drawn []string
	for _, s := range tree {
		drawn = append(drawn, s.Name+"<"+s.Parent+">"+strconv.Itoa(s.Depth))
	}
	if strings.Join(drawn, " ") != "s1<>0 s2<s1>1" || !tree[1].Current || !tree[1].WithState {
		t.Errorf("restored tree %v (%+v); want s1 → s2, s2 current, with state", drawn, tree)
	}

	if c := d.config("back"); c.VMs[0].State != "saved" {
		t.Errorf("restored VM is %s, want saved", c.VMs[0].State)
	}
	if res := d.run("config", "deploy", "back"); res.code == 0 || !strings.Contains(res.stderr, "--fenced") {
		t.Errorf("unfenced deploy while st holds the MACs: exit %d %s; want refused, saying --fenced", res.code, res.stderr)
	}
	// The guest behind the fence, asked on its external address.
	external := func() string {
		t.Helper()
		flushNeighbours(t, ns) // a redeployed fence answers from a new MAC
		return externalIPs(t, d.config("back"))[0]
	}
	d.ok("config", "deploy", "back", "--fenced")
	if kv := ns.waitGuest(t, external(), 60*time.Second); kv["marker"] != "after-2" || kv["boot"] != at2["boot"] {
		t.Errorf("restored guest: marker %q boot %s; want after-2, boot %s (resumed from the saved state)", kv["marker"], kv["boot"], at2["boot"])
	}
	d.ok("snapshot", "revert", "back", "s2")
	if kv := ns.waitGuest(t, external(), 60*time.Second); kv["marker"] != "level-2" || kv["boot"] != at2["boot"] {
		t.Errorf("revert to s2 (with state): marker %q boot %s; want level-2, boot %s (resumed)", kv["marker"], kv["boot"], at2["boot"])
	}
	d.ok("snapshot", "revert", "back", "s1")
	if kv := ns.waitGuest(t, external(), 120*time.Second); kv["marker"] != "level-1" || kv["boot"] == at2["boot"] {
		t.Errorf("revert to s1: marker %q boot %s; want level-1, booted", kv["marker"], kv["boot"])
	}
	d.ok("config", "undeploy", "back")
	d.ok("snapshot", "delete", "back", "s2")
	d.ok("config", "delete", "back")
	d.ok("config", "delete", "st")
	if res := d.run("doctor"); res.code != 0 {
		t.Errorf("doctor at the end: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}
