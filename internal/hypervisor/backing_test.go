package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/syncbuf"
)

// The data disk's marker block (testdata/guest/README.md): 4096 bytes at
// virtual size - 1 MiB, 4 KiB block 3840 of the 16 MiB data.qcow2.
const (
	markerOffset = 15 << 20
	markerBlock  = markerOffset / 4096
)

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func qemuIO(t *testing.T, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	if out, err := exec.Command("qemu-io", append(args, path)...).CombinedOutput(); err != nil || strings.Contains(string(out), "error") || strings.Contains(string(out), "failed") {
		t.Fatalf("qemu-io %s %q: %v: %s", path, cmds, err, out)
	}
}

// guestDataChain builds, in dir, a copy of the test guest's data disk as
// NAME-base.qcow2, depth frozen deltas NAME-01.. on it (each writing its
// own pattern, the 4th the marker block MARKER=marker) and a writable top
// NAME-top.qcow2, each naming its parent by base name. It returns the
// layers, base first, top last.
func guestDataChain(t *testing.T, dir, out, name string, depth int, marker string) []string {
	t.Helper()
	base := filepath.Join(dir, name+"-base.qcow2")
	b, err := os.ReadFile(filepath.Join(out, "data.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base, b, 0o600); err != nil {
		t.Fatal(err)
	}
	block := filepath.Join(dir, name+"-marker.blk")
	content := make([]byte, 4096)
	copy(content, "MARKER="+marker+"\n")
	if err := os.WriteFile(block, content, 0o600); err != nil {
		t.Fatal(err)
	}
	layers := []string{base}
	for i := 1; i <= depth+1; i++ {
		path := filepath.Join(dir, fmt.Sprintf("%s-%02d.qcow2", name, i))
		if i == depth+1 {
			path = filepath.Join(dir, name+"-top.qcow2")
		}
		qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Base(layers[i-1]), path)
		if i <= depth {
			cmds := []string{fmt.Sprintf("write -q -P %d %dk 64k", i, i*256)}
			if i == 4 {
				cmds = append(cmds, fmt.Sprintf("write -q -s %s %d 4096", block, markerOffset))
			}
			qemuIO(t, path, cmds...)
		}
		layers = append(layers, path)
	}
	for _, l := range layers[:len(layers)-1] {
		if err := os.Chmod(l, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	return layers
}

// shortcutOf writes, beside runTop, a frozen layer with runTop's content
// on parent, with qemu-img alone (an empty delta rebased in safe mode),
// independently of package disk.
func shortcutOf(t *testing.T, runTop, parent, name string) string {
	t.Helper()
	sc := filepath.Join(filepath.Dir(runTop), name)
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Base(runTop), sc)
	qemuImg(t, "rebase", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Base(parent), sc)
	qemuImg(t, "compare", "-q", runTop, sc)
	if err := os.Chmod(sc, 0o400); err != nil {
		t.Fatal(err)
	}
	return sc
}

// guestShell runs shell commands on the guest's serial console (booted
// with stagehand.shell) and reads their output from the console socket,
// which it drains all the time as a console client must.
type guestShell struct {
	t    *testing.T
	conn net.Conn
	out  *syncbuf.Buffer
	n    int
}

func newGuestShell(t *testing.T, socket string) *guestShell {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	g := &guestShell{t: t, conn: conn, out: &syncbuf.Buffer{}}
	done := make(chan struct{})
	go func() { io.Copy(g.out, conn); close(done) }()
	t.Cleanup(func() { conn.Close(); <-done })
	return g
}

// run sends cmd and returns the first line of its output. It sends again
// every few seconds until the shell is up.
func (g *guestShell) run(cmd string, timeout time.Duration) string {
	g.t.Helper()
	g.n++
	// The console echoes the command line: the tag in the output is
	// computed by the shell, so the echo cannot match it.
	re := regexp.MustCompile(fmt.Sprintf(`OUT%d:([^\r\n]*)\r*\n`, g.n+1000))
	deadline := time.Now().Add(timeout)
	for {
		if _, err := fmt.Fprintf(g.conn, "echo OUT$((%d+1000)):$(%s)\n", g.n, cmd); err != nil {
			g.t.Fatalf("write to the console: %v", err)
		}
		for wait := time.Now().Add(3 * time.Second); time.Now().Before(wait); time.Sleep(50 * time.Millisecond) {
			if m := re.FindStringSubmatch(g.out.String()); m != nil {
				return m[1]
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no answer to %q within %s; console:\n%q", cmd, timeout, tail([]byte(g.out.String()), 400))
		}
	}
}

// marker reads the marker block of dev from the guest with O_DIRECT, so
// the read goes to QEMU, not to the guest's page cache.
func (g *guestShell) marker(dev string) string {
	g.t.Helper()
	return g.run(fmt.Sprintf("dd if=%s bs=4096 skip=%d count=1 iflag=direct 2>/dev/null | tr -d '\\000' | sed -n 's/^MARKER=//p'", dev, markerBlock), 30*time.Second)
}

// recordedBacking is the backing file name in a layer's header, as
// qemu-img reads it.
func recordedBacking(t *testing.T, path string) string {
	t.Helper()
	var info struct {
		BackingFilename string `json:"backing-filename"`
	}
	if err := json.Unmarshal([]byte(qemuImg(t, "info", "-U", "--output=json", path)), &info); err != nil {
		t.Fatal(err)
	}
	return info.BackingFilename
}

// openLayers returns the qcow2 files the QEMU process holds open.
func openLayers(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasSuffix(target, ".qcow2") && !slices.Contains(files, target) {
			files = append(files, target)
		}
	}
	slices.Sort(files)
	return files
}

// quitWithChain quits vm, then checks that top's chain on disk is want
// (file names, top first) and passes qemu-img check.
func quitWithChain(ctx context.Context, t *testing.T, vm *VM, top string, want ...string) {
	t.Helper()
	if err := vm.quit(ctx); err != nil {
		t.Fatal(err)
	}
	if names := chainFiles(t, top); !slices.Equal(names, want) {
		t.Fatalf("the chain of %s on disk after quit = %q, want %q", filepath.Base(top), names, want)
	}
	qemuImg(t, "check", "-q", top)
}

// shellGuestSpec is the shared test guest's output directory and a spec
// that boots its kernel with a shell on the serial console (256 MiB).
func shellGuestSpec(t *testing.T) (string, Spec) {
	t.Helper()
	out := sharedTestGuest(t)
	spec := testSpec(t, needGuest(t), false)
	cmdline, err := os.ReadFile(filepath.Join(out, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	spec.Kernel, spec.Initrd = filepath.Join(out, "vmlinuz"), filepath.Join(out, "initrd.img")
	spec.Cmdline = strings.TrimSpace(string(cmdline)) + " stagehand.shell"
	spec.MemoryMiB = 256
	return out, spec
}

// TestSwitchBackingLive boots the test guest on two data disks, each a
// chain 14 layers deep (base, 12 frozen deltas, writable top), and
// switches both to shortcut layers while it runs: vda at its top (the
// header changes too), vdb below a frozen layer (graph only). The guest
// keeps reading its markers, which live in the replaced runs, QEMU closes
// the runs' files, and after quit the top's chain on disk is the short one
// and passes qemu-img check.
func TestSwitchBackingLive(t *testing.T) {
	out, spec := shellGuestSpec(t)
	dir := t.TempDir()
	a := guestDataChain(t, dir, out, "a", 12, "deep-vda")
	b := guestDataChain(t, dir, out, "b", 12, "deep-vdb")
	aTop, bTop := a[13], b[13]
	spec.Disks = []string{aTop, bTop}
	// vda: everything frozen, layers 1..12; vdb: layers 1..6, under 7.
	scA := shortcutOf(t, a[12], a[0], "a-sc.qcow2")
	scB := shortcutOf(t, b[6], b[0], "b-sc.qcow2")
	oldA := filepath.Join(dir, "a-top-before.qcow2")
	qemuImg(t, "convert", "-O", "qcow2", aTop, oldA) // the guest-visible disk before

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitSerial(t, spec.SerialLogPath(), 0, regexp.MustCompile(`STAGEHAND-BOOT [^\r\n]*disk=vda`), 2*time.Minute)
	sh := newGuestShell(t, spec.ConsoleSocketPath())
	if got := sh.marker("/dev/vda"); got != "deep-vda" {
		t.Fatalf("vda marker before the switch = %q", got)
	}
	if got := sh.marker("/dev/vdb"); got != "deep-vdb" {
		t.Fatalf("vdb marker before the switch = %q", got)
	}

	// Refusals change nothing.
	before := openLayers(t, vm.PID())
	if err := vm.SwitchBacking(ctx, 0, filepath.Join(dir, "nope.qcow2"), scA); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("SwitchBacking of a layer not in the chain = %v, want not found", err)
	}
	if err := vm.SwitchBacking(ctx, 0, aTop, filepath.Join(dir, "missing-sc.qcow2")); err == nil {
		t.Fatal("SwitchBacking onto a missing shortcut succeeded")
	}
	if got := openLayers(t, vm.PID()); !slices.Equal(got, before) {
		t.Fatalf("failed switches changed the open layers:\n%q\nwas\n%q", got, before)
	}
	if got := recordedBacking(t, aTop); got != "a-12.qcow2" {
		t.Fatalf("failed switch left the top's header naming %q", got)
	}

	began := time.Now()
	if err := vm.SwitchBacking(ctx, 0, aTop, scA); err != nil {
		t.Fatal(err)
	}
	t.Logf("vda switched at its top in %s", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	if err := vm.SwitchBacking(ctx, 1, b[7], scB); err != nil {
		t.Fatal(err)
	}
	t.Logf("vdb switched under layer 7 in %s", time.Since(began).Round(time.Millisecond))

	open := openLayers(t, vm.PID())
	for _, l := range append(slices.Clone(a[1:13]), b[1:7]...) {
		if slices.Contains(open, l) {
			t.Errorf("QEMU still holds %s, a layer of a replaced run", filepath.Base(l))
		}
	}
	for _, l := range []string{scA, scB, aTop, bTop, b[7], b[12], a[0], b[0]} {
		if !slices.Contains(open, l) {
			t.Errorf("QEMU does not hold %s; open: %q", filepath.Base(l), open)
		}
	}
	if st, err := vm.Status(ctx); err != nil || st != StateRunning {
		t.Fatalf("Status after the switch = %q, %v", st, err)
	}
	if got := sh.marker("/dev/vda"); got != "deep-vda" {
		t.Fatalf("vda marker after the switch = %q", got)
	}
	if got := sh.marker("/dev/vdb"); got != "deep-vdb" {
		t.Fatalf("vdb marker after the switch = %q", got)
	}
	// The writable top still takes writes.
	if got := sh.run("dd if=/dev/zero bs=4096 count=1 2>/dev/null | tr '\\000' Z | dd of=/dev/vda bs=4096 seek=100 oflag=direct 2>/dev/null && echo written", 30*time.Second); got != "written" {
		t.Fatalf("guest write after the switch: %q", got)
	}

	quitWithChain(ctx, t, vm, aTop, "a-top.qcow2", "a-sc.qcow2", "a-base.qcow2")
	qemuIO(t, aTop, "read -q -P 0x5a 409600 4096") // 'Z', written through the new chain
	qemuIO(t, oldA, fmt.Sprintf("write -q -P 0x5a %d 4096", 409600))
	qemuImg(t, "compare", "-q", oldA, aTop)
	// vdb's frozen layer 7 still names layer 6 on disk: rebasing it waits
	// until no VM holds it.
	if got := recordedBacking(t, b[7]); got != "b-06.qcow2" {
		t.Fatalf("layer 7 of vdb names %q on disk", got)
	}
	qemuImg(t, "check", "-q", bTop)
}

// TestSwitchBackingAfterLiveSnapshots snapshots the running test guest's
// data disk live twice (SnapshotDisks), writing between the two, and then
// switches the disk's top (the second snapshot's overlay) onto a shortcut
// of the run below it: a top whose nodes a live snapshot made is switched
// like one of the command line. QEMU closes the replaced run, though the
// live snapshot opened its top by blockdev-add; a third snapshot and a
// second switch close the first shortcut too. The guest keeps its marker
// and its writes, and after quit the chain on disk is the short one and
// passes check.
func TestSwitchBackingAfterLiveSnapshots(t *testing.T) {
	out, spec := shellGuestSpec(t)
	dir := t.TempDir()
	a := guestDataChain(t, dir, out, "a", 4, "live-vda")
	spec.Disks = []string{a[5]}
	var info struct {
		Size int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(qemuImg(t, "info", "--output=json", a[5])), &info); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitSerial(t, spec.SerialLogPath(), 0, regexp.MustCompile(`STAGEHAND-BOOT [^\r\n]*disk=vda`), 2*time.Minute)
	sh := newGuestShell(t, spec.ConsoleSocketPath())
	if got := sh.marker("/dev/vda"); got != "live-vda" {
		t.Fatalf("vda marker before the snapshots = %q", got)
	}
	// Overlays as disk.CreateDelta writes them: beside the top, naming it
	// by base name (-u: the running top is locked).
	snapshot := func(name, below string) string {
		ov := filepath.Join(dir, name)
		qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Base(below), "-u", ov, fmt.Sprint(info.Size))
		if err := vm.SnapshotDisks(ctx, []string{ov}); err != nil {
			t.Fatalf("SnapshotDisks onto %s: %v", name, err)
		}
		return ov
	}
	s1 := snapshot("a-s1.qcow2", a[5])
	if got := sh.run("dd if=/dev/zero bs=4096 count=1 2>/dev/null | tr '\\000' Z | dd of=/dev/vda bs=4096 seek=100 oflag=direct 2>/dev/null && echo written", 30*time.Second); got != "written" {
		t.Fatalf("guest write between the snapshots: %q", got)
	}
	s2 := snapshot("a-s2.qcow2", s1)

	// The run under s2 (s1, the old top, layers 4..1) has a shortcut on
	// the base with s1's content.
	sc := shortcutOf(t, s1, a[0], "a-sc.qcow2")
	began := time.Now()
	if err := vm.SwitchBacking(ctx, 0, s2, sc); err != nil {
		t.Fatalf("SwitchBacking after two live snapshots: %v", err)
	}
	t.Logf("switched after two live snapshots in %s", time.Since(began).Round(time.Millisecond))
	open := openLayers(t, vm.PID())
	for _, l := range append([]string{s1}, a[1:6]...) {
		if slices.Contains(open, l) {
			t.Errorf("QEMU still holds %s, a layer of the replaced run", filepath.Base(l))
		}
	}
	if st, err := vm.Status(ctx); err != nil || st != StateRunning {
		t.Fatalf("Status after the switch = %q, %v", st, err)
	}
	if got := sh.marker("/dev/vda"); got != "live-vda" {
		t.Fatalf("vda marker after the switch = %q", got)
	}
	if got := sh.run("dd if=/dev/vda bs=4096 skip=100 count=1 iflag=direct 2>/dev/null | tr -d Z | wc -c", 30*time.Second); strings.TrimSpace(got) != "0" {
		t.Fatalf("the block written between the snapshots reads %q non-Z bytes after the switch", got)
	}
	if got := sh.run("echo hello | dd of=/dev/vda bs=4096 seek=200 conv=sync oflag=direct 2>/dev/null && echo written", 30*time.Second); got != "written" {
		t.Fatalf("guest write after the switch: %q", got)
	}

	// A third snapshot, and a second switch over the first one's shortcut:
	// the replaced snapshot top and shortcut are closed too.
	s3 := snapshot("a-s3.qcow2", s2)
	sc2 := shortcutOf(t, s2, a[0], "a-sc2.qcow2")
	if err := vm.SwitchBacking(ctx, 0, s3, sc2); err != nil {
		t.Fatalf("second SwitchBacking: %v", err)
	}
	open = openLayers(t, vm.PID())
	for _, l := range []string{s2, sc} {
		if slices.Contains(open, l) {
			t.Errorf("QEMU still holds %s after the second switch", filepath.Base(l))
		}
	}
	if want := []string{a[0], s3, sc2}; !slices.Equal(open, want) { // sorted
		t.Errorf("QEMU holds %q after the second switch, want %q", open, want)
	}
	if got := sh.marker("/dev/vda"); got != "live-vda" {
		t.Fatalf("vda marker after the second switch = %q", got)
	}

	quitWithChain(ctx, t, vm, s3, "a-s3.qcow2", "a-sc2.qcow2", "a-base.qcow2")
	qemuIO(t, s3, "read -q -P 0x5a 409600 4096") // written between the first two snapshots
	qemuIO(t, s3, "read -q -P 0x68 819200 1")    // 'h' of "hello", written after the first switch
}

// chainFiles is the base names of the files of top's backing chain as
// qemu-img reads them from disk, top first.
func chainFiles(t *testing.T, top string) []string {
	t.Helper()
	var chain []struct {
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal([]byte(qemuImg(t, "info", "--backing-chain", "--output=json", top)), &chain); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range chain {
		names = append(names, filepath.Base(c.Filename))
	}
	return names
}
