package lab_test

// Integration tests of the lab over the real parts: qemu-img and qemu-io
// chains in a temp dir and a real SQLite file.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

type env struct {
	t    testing.TB
	svc  *lab.Service
	dir  string
	db   store.Store
	jobs *jobs.Manager
	opts lab.Options // what its lab was made with
}

type envOpt func(*lab.Options)

func requireQemuImg(t testing.TB) {
	t.Helper()
	for _, b := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-utils): %v", b, err)
		}
	}
}

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	requireQemuImg(t)
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	jm := jobs.NewManager()
	t.Cleanup(jm.Close)
	o := lab.Options{DataDir: dir, Store: db, Disks: disk.New(), Jobs: jm}
	for _, f := range opts {
		f(&o)
	}
	svc, err := lab.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, svc: svc, dir: dir, db: db, jobs: jm, opts: o}
}

// qemuIO runs qemu-io commands on an image (the whole chain below it).
func qemuIO(t testing.TB, path string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, path)
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Pattern verification failed") || strings.Contains(string(out), "failed") {
		t.Fatalf("qemu-io %v %s: %v\n%s", cmds, path, err, out)
	}
	return string(out)
}

// verifyPattern asserts that [off, off+len) of the image reads as pattern.
func verifyPattern(t testing.TB, path string, off, length int, pattern byte) {
	t.Helper()
	qemuIO(t, path, fmt.Sprintf("read -P 0x%02x %d %d", pattern, off, length))
}

// makeImage writes a qcow2 of size MiB with pattern 0xaa in its first MiB.
func makeImage(t testing.TB, sizeMiB int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", p, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	qemuIO(t, p, "write -P 0xaa 0 1M")
	return p
}

func (e *env) template(name string) {
	e.t.Helper()
	if _, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: name, Disks: []string{makeImage(e.t, 64)}}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) network(name, subnet string, pools ...string) {
	e.t.Helper()
	if _, err := e.svc.Networks.Create(context.Background(), lab.NetworkSpec{Name: name, Subnet: subnet, Pools: pools}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) config(name string, vms ...lab.VMSpec) *lab.ConfigView {
	e.t.Helper()
	v, err := e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: name, VMs: vms})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) get(name string) *lab.ConfigView {
	e.t.Helper()
	v, err := e.svc.Configs.Get(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) linked(src, dst string) *lab.ConfigView {
	e.t.Helper()
	v, err := e.svc.Configs.LinkedClone(context.Background(), src, dst, lab.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) full(src, dst string) jobs.Job {
	e.t.Helper()
	j, err := e.svc.Configs.StartFullClone(context.Background(), src, dst, lab.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j, err = e.jobs.Wait(ctx, j.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// top returns the top layer path of a VM's first disk.
func top(v *lab.ConfigView, vm string) string {
	for _, x := range v.VMs {
		if x.Name == vm {
			return x.Disks[0].Path
		}
	}
	panic("no VM " + vm)
}

func chainOf(v *lab.ConfigView, vm string) []string {
	for _, x := range v.VMs {
		if x.Name == vm {
			return x.Disks[0].Chain
		}
	}
	panic("no VM " + vm)
}

// assertConsistent runs the doctor and checks that the files on disk are
// exactly the layers the store references.
func (e *env) assertConsistent() {
	e.t.Helper()
	ctx := context.Background()
	r, err := e.svc.Doctor(ctx, false)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range r.Problems {
		if p.Kind == lab.ProblemStateDiffers {
			// Guests the fake runtime lost across a restart: a finding
			// about processes, not files; the tests that expect it
			// assert it themselves.
			continue
		}
		e.t.Errorf("doctor: %s %s: %s", p.Kind, p.Subject, p.Detail)
	}
	var inStore []string
	if err := e.db.View(ctx, func(tx store.Tx) error {
		ls, err := tx.Layers().List()
		for _, l := range ls {
			inStore = append(inStore, filepath.Join(e.dir, l.Path))
		}
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	var onDisk []string // every entry, dot files (temporary ones) included
	for _, f := range dataFiles(e.t, e.dir) {
		if strings.HasPrefix(f, "layers"+string(filepath.Separator)) {
			onDisk = append(onDisk, filepath.Join(e.dir, f))
		}
	}
	sort.Strings(inStore)
	sort.Strings(onDisk)
	if strings.Join(inStore, "\n") != strings.Join(onDisk, "\n") {
		e.t.Errorf("files on disk differ from the store\nstore: %v\ndisk:  %v", inStore, onDisk)
	}
}

func sha(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isReadOnly(t testing.TB, path string) bool {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()&0o222 == 0
}

func TestLinkedCloneThreeLevelsIsolatesWrites(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	// Data in the source before cloning, so each level freezes a layer.
	qemuIO(t, top(e.get("a"), "vm"), "write -P 0x11 1M 1M")
	e.linked("a", "b")
	qemuIO(t, top(e.get("b"), "vm"), "write -P 0x22 2M 1M")
	e.linked("b", "c")
	qemuIO(t, top(e.get("c"), "vm"), "write -P 0x33 3M 1M")

	// After cloning, the source and each clone write different data at the
	// same offset.
	for name, p := range map[string]byte{"a": 0x44, "b": 0x55, "c": 0x66} {
		qemuIO(t, top(e.get(name), "vm"), fmt.Sprintf("write -P 0x%02x 4M 1M", p))
	}
	a, b, c := top(e.get("a"), "vm"), top(e.get("b"), "vm"), top(e.get("c"), "vm")
	for _, p := range []string{a, b, c} {
		verifyPattern(t, p, 0, 1<<20, 0xaa)     // template data, shared
		verifyPattern(t, p, 1<<20, 1<<20, 0x11) // a's data before the first clone
	}
	verifyPattern(t, a, 2<<20, 1<<20, 0x00) // b's later write is not in a
	verifyPattern(t, b, 2<<20, 1<<20, 0x22)
	verifyPattern(t, c, 2<<20, 1<<20, 0x22)
	verifyPattern(t, b, 3<<20, 1<<20, 0x00) // c's write is not in b
	verifyPattern(t, c, 3<<20, 1<<20, 0x33)
	verifyPattern(t, a, 4<<20, 1<<20, 0x44)
	verifyPattern(t, b, 4<<20, 1<<20, 0x55)
	verifyPattern(t, c, 4<<20, 1<<20, 0x66)

	// Chains: what the store says is what qemu-img says; every layer below
	// a top is a read-only file; tops are writable.
	d := disk.New()
	for _, name := range []string{"a", "b", "c"} {
		v := e.get(name)
		want := chainOf(v, "vm")
		got, err := d.Chain(context.Background(), want[0])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: qemu-img chain %v, store chain %v", name, got, want)
		}
		if isReadOnly(t, want[0]) {
			t.Errorf("%s: top %s is read-only", name, want[0])
		}
		for _, l := range want[1:] {
			if !isReadOnly(t, l) {
				t.Errorf("%s: frozen layer %s is writable", name, l)
			}
		}
	}
	// c's chain: c top, b's frozen layer, a's frozen layer, a's first top
	// (frozen at the first clone)... down to the base.
	if n := len(chainOf(e.get("c"), "vm")); n != 4 {
		t.Errorf("c's chain has %d layers, want 4 (c, b's frozen delta, a's frozen delta, base): %v", n, chainOf(e.get("c"), "vm"))
	}
	e.assertConsistent()
}

func TestLinkedCloneEmptyDeltaShortcut(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	a := e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	aTop := top(a, "vm")
	// a's top is empty and sits on the frozen template base: clones build
	// on the base, a is untouched, chains do not grow.
	for _, name := range []string{"b", "c", "d"} {
		v := e.linked("a", name)
		if got := len(chainOf(v, "vm")); got != 2 {
			t.Errorf("%s: chain %v, want 2 layers", name, chainOf(v, "vm"))
		}
	}
	if got := top(e.get("a"), "vm"); got != aTop {
		t.Errorf("a's top changed from %s to %s though it was empty", aTop, got)
	}
	if isReadOnly(t, aTop) {
		t.Errorf("a's empty top was frozen")
	}
	// A write into a's top ends the shortcut: the next clone freezes it.
	qemuIO(t, aTop, "write -z 0 4k") // zeroes count as data: they hide the base
	v := e.linked("a", "e")
	if got := len(chainOf(v, "vm")); got != 3 {
		t.Errorf("e: chain %v, want 3 layers", chainOf(v, "vm"))
	}
	if !isReadOnly(t, aTop) {
		t.Errorf("a's written top was not frozen")
	}
	verifyPattern(t, top(v, "vm"), 0, 4096, 0x00)
	verifyPattern(t, top(v, "vm"), 4096, 4096, 0xaa)
	e.assertConsistent()
}

func TestLinkedCloneChainLimit(t *testing.T) {
	e := newEnv(t, func(o *lab.Options) { o.ChainLimit = 4 })
	e.template("base")
	e.config("c0", lab.VMSpec{Name: "vm", Template: "base"})
	prev := "c0"
	var err error
	for i := 1; i < 10; i++ {
		qemuIO(t, top(e.get(prev), "vm"), fmt.Sprintf("write -P %d %dk 4k", i, i*4))
		name := fmt.Sprintf("c%d", i)
		_, err = e.svc.Configs.LinkedClone(context.Background(), prev, name, lab.CreateOptions{})
		if err != nil {
			break
		}
		if n := len(chainOf(e.get(name), "vm")); n > 4 {
			t.Fatalf("%s has a chain of %d layers, over the limit", name, n)
		}
		prev = name
	}
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("want a conflict suggesting a full clone, got %v", err)
	}
	e.assertConsistent()
	// A full clone of the deep chain works and starts a fresh chain.
	j := e.full(prev, "flat")
	if j.State != jobs.Succeeded {
		t.Fatalf("full clone: %s %s", j.State, j.Error)
	}
	if n := len(chainOf(e.get("flat"), "vm")); n != 1 {
		t.Errorf("full clone chain has %d layers, want 1", n)
	}
	e.assertConsistent()
}

func TestFullCloneEqualsSourceAndLeavesItUntouched(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.network("lan", "10.9.0.0/24", "10.9.0.10-10.9.0.20")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base", Network: "lan"})
	qemuIO(t, top(e.get("a"), "vm"), "write -P 0x11 1M 1M")
	e.linked("a", "b")
	qemuIO(t, top(e.get("b"), "vm"), "write -P 0x22 2M 1M")
	e.linked("b", "c")
	qemuIO(t, top(e.get("c"), "vm"), "write -P 0x33 3M 64k")
	src := e.get("c")
	sums := map[string]string{}
	for _, l := range chainOf(src, "vm") {
		sums[l] = sha(t, l)
	}
	j := e.full("c", "copy")
	if j.State != jobs.Succeeded {
		t.Fatalf("full clone: %s: %s", j.State, j.Error)
	}
	if j.Total != 64<<20 || j.Done != j.Total {
		t.Errorf("progress %d/%d, want %d/%d", j.Done, j.Total, 64<<20, 64<<20)
	}
	cp := e.get("copy")
	if len(chainOf(cp, "vm")) != 1 {
		t.Fatalf("full clone has chain %v, want one standalone base", chainOf(cp, "vm"))
	}
	info, err := disk.New().Info(context.Background(), top(cp, "vm"))
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFile != "" {
		t.Errorf("full clone has backing file %q", info.BackingFile)
	}
	eq, err := disk.Compare(context.Background(), top(src, "vm"), top(cp, "vm"))
	if err != nil || !eq {
		t.Fatalf("qemu-img compare: equal=%v err=%v", eq, err)
	}
	for l, sum := range sums {
		if got := sha(t, l); got != sum {
			t.Errorf("source layer %s changed", l)
		}
	}
	if got := chainOf(e.get("c"), "vm"); strings.Join(got, " ") != strings.Join(chainOf(src, "vm"), " ") {
		t.Errorf("source chain changed: %v", got)
	}
	// Same network parameters.
	if cp.VMs[0].NICs[0].IP != src.VMs[0].NICs[0].IP || cp.VMs[0].NICs[0].MAC == src.VMs[0].NICs[0].MAC {
		t.Errorf("full clone NIC %+v, source NIC %+v: want same IP, new MAC", cp.VMs[0].NICs[0], src.VMs[0].NICs[0])
	}
	e.assertConsistent()
}

func TestFullCloneCancelLeavesNothing(t *testing.T) {
	var e *env
	var jobID string
	var mu sync.Mutex
	e = newEnv(t, func(o *lab.Options) {
		o.FailAt = func(op, step string) error {
			if op == "full-clone" && step == "consolidate" {
				mu.Lock()
				id := jobID
				mu.Unlock()
				for id == "" { // the job may start before Start returns
					time.Sleep(time.Millisecond)
					mu.Lock()
					id = jobID
					mu.Unlock()
				}
				e.jobs.Cancel(id)
			}
			return nil
		}
	})
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	j, err := e.svc.Configs.StartFullClone(context.Background(), "a", "b", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	jobID = j.ID
	mu.Unlock()
	j, _ = e.jobs.Wait(context.Background(), j.ID)
	if j.State != jobs.Canceled {
		t.Fatalf("job state %s (%s), want canceled", j.State, j.Error)
	}
	if _, err := e.svc.Configs.Get(context.Background(), "b"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("cancelled clone exists: %v", err)
	}
	e.assertConsistent()
}

func TestCloneKeepsNetworkParametersAndFamiliesHoldIPs(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.network("lan", "10.8.0.0/24", "10.8.0.10-10.8.0.12")
	a := e.config("a", lab.VMSpec{Name: "web", Template: "base", Network: "lan"},
		lab.VMSpec{Name: "db", Template: "base", Network: "lan", IP: "10.8.0.50"},
		lab.VMSpec{Name: "cl", Template: "base", Network: "lan", IP: "dhcp"})
	b := e.linked("a", "b")
	for i := range a.VMs {
		na, nb := a.VMs[i].NICs[0], b.VMs[i].NICs[0]
		if na.IP != nb.IP || na.IPMode != nb.IPMode || na.Network != nb.Network {
			t.Errorf("VM %s: clone NIC %+v differs from source %+v", a.VMs[i].Name, nb, na)
		}
		if na.MAC == nb.MAC {
			t.Errorf("VM %s: clone kept MAC %s", a.VMs[i].Name, na.MAC)
		}
	}
	nw, err := e.svc.Networks.Get(context.Background(), "lan")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range nw.Usage {
		if len(u.Holders) != 2 {
			t.Errorf("%s held by %v, want the family a and b", u.IP, u.Holders)
		}
	}
}

func TestDeleteInEveryOrderReleasesLayersAndIPs(t *testing.T) {
	orders := [][]string{{"a", "b", "c"}, {"a", "c", "b"}, {"b", "a", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"c", "b", "a"}}
	for _, order := range orders {
		t.Run(strings.Join(order, ""), func(t *testing.T) {
			e := newEnv(t)
			e.template("base")
			e.network("lan", "10.7.0.0/24", "10.7.0.10-10.7.0.20")
			e.config("a", lab.VMSpec{Name: "vm", Template: "base", Network: "lan"})
			qemuIO(t, top(e.get("a"), "vm"), "write -P 1 0 4k")
			e.linked("a", "b")
			qemuIO(t, top(e.get("b"), "vm"), "write -P 2 0 4k")
			e.linked("b", "c")
			ip := e.get("a").VMs[0].NICs[0].IP
			e.assertConsistent()
			for i, name := range order {
				if err := e.svc.Configs.Delete(context.Background(), name); err != nil {
					t.Fatal(err)
				}
				e.assertConsistent()
				nw, err := e.svc.Networks.Get(context.Background(), "lan")
				if err != nil {
					t.Fatal(err)
				}
				held := len(nw.Usage) == 1 && nw.Usage[0].IP == ip
				if last := i == len(order)-1; held == last {
					t.Errorf("after deleting %v: IP %s held=%v, want held until the last member is gone (usage %+v)", order[:i+1], ip, held, nw.Usage)
				}
				// The survivors still read their data.
				for _, other := range order[i+1:] {
					verifyPattern(t, top(e.get(other), "vm"), 4096, 4096, 0xaa)
				}
			}
			// Only the template base is left.
			files, _ := filepath.Glob(filepath.Join(e.dir, "layers", "*"))
			if len(files) != 1 {
				t.Errorf("left %v, want only the template base", files)
			}
		})
	}
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.network("lan", "10.6.0.0/24", "10.6.0.10-10.6.0.11")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base", Network: "lan"})
	ctx := context.Background()
	text := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(text, []byte("hello, not a disk\n"), 0o644)
	cases := []struct {
		name string
		kind error
		run  func() error
	}{
		{"slash in name", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "x/y", VMs: []lab.VMSpec{{Name: "vm", Template: "base"}}})
			return err
		}},
		{"dotdot name", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Configs.LinkedClone(ctx, "a", "..", lab.CreateOptions{})
			return err
		}},
		{"duplicate config", errdefs.ErrConflict, func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "a", VMs: []lab.VMSpec{{Name: "vm", Template: "base"}}})
			return err
		}},
		{"clone onto existing", errdefs.ErrConflict, func() error { _, err := e.svc.Configs.LinkedClone(ctx, "a", "a", lab.CreateOptions{}); return err }},
		{"unknown source", errdefs.ErrNotFound, func() error { _, err := e.svc.Configs.LinkedClone(ctx, "nope", "z", lab.CreateOptions{}); return err }},
		{"unknown template", errdefs.ErrNotFound, func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "z", VMs: []lab.VMSpec{{Name: "vm", Template: "nope"}}})
			return err
		}},
		{"unknown network", errdefs.ErrNotFound, func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "z", VMs: []lab.VMSpec{{Name: "vm", Template: "base", Network: "nope"}}})
			return err
		}},
		{"ip outside subnet", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "z", VMs: []lab.VMSpec{{Name: "vm", Template: "base", Network: "lan", IP: "10.5.0.5"}}})
			return err
		}},
		{"ip is gateway", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "z", VMs: []lab.VMSpec{{Name: "vm", Template: "base", Network: "lan", IP: "10.6.0.1"}}})
			return err
		}},
		{"pool exhausted", errdefs.ErrConflict, func() error {
			// One address is left: two pool VMs need two.
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "z", VMs: []lab.VMSpec{
				{Name: "v1", Template: "base", Network: "lan"}, {Name: "v2", Template: "base", Network: "lan"}}})
			return err
		}},
		{"text file as qcow2", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t2", Disks: []string{text}, Format: "qcow2"})
			return err
		}},
		{"missing disk file", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t3", Disks: []string{"/nonexistent/disk.img"}})
			return err
		}},
		{"duplicate template", errdefs.ErrConflict, func() error {
			_, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "base", Disks: []string{makeImage(t, 8)}})
			return err
		}},
		{"pool with gateway", errdefs.ErrInvalid, func() error {
			_, err := e.svc.Networks.Create(ctx, lab.NetworkSpec{Name: "n2", Subnet: "10.4.0.0/24", Pools: []string{"10.4.0.1-10.4.0.5"}})
			return err
		}},
		{"delete unknown", errdefs.ErrNotFound, func() error { return e.svc.Configs.Delete(ctx, "nope") }},
		{"template in use", errdefs.ErrConflict, func() error { return e.svc.Templates.Delete(ctx, "base") }},
	}
	before := e.snapshot()
	for _, c := range cases {
		err := c.run()
		if !errors.Is(err, c.kind) {
			t.Errorf("%s: got %v, want kind %v", c.name, err, c.kind)
		}
		if after := e.snapshot(); after != before {
			t.Errorf("%s changed state:\nbefore %s\nafter  %s", c.name, before, after)
		}
	}
	e.assertConsistent()
}

// snapshot describes the whole state: configurations, templates, network
// usage and the files in the data dir.
func (e *env) snapshot() string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	cs, _ := e.svc.Configs.List(ctx)
	for _, c := range cs {
		fmt.Fprintf(&b, "config %s %s;", c.Name, c.State)
		for _, v := range c.VMs {
			fmt.Fprintf(&b, " %s %v %v;", v.Name, v.Disks, v.NICs)
		}
	}
	ts, _ := e.svc.Templates.List(ctx)
	for _, t := range ts {
		fmt.Fprintf(&b, "template %s;", t.Name)
	}
	ns, _ := e.svc.Networks.List(ctx)
	for _, n := range ns {
		fmt.Fprintf(&b, "network %s %+v;", n.Name, n.Usage)
	}
	fmt.Fprintf(&b, "files %q;", dataFiles(e.t, e.dir)) // dot files included
	return b.String()
}

func TestDeployedSourceCannotBeClonedOrDeleted(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	ctx := context.Background()
	if err := e.db.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get("a")
		if err != nil {
			return err
		}
		c.State = store.StateDeployed
		return tx.Configs().Update(c)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Configs.LinkedClone(ctx, "a", "b", lab.CreateOptions{}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "undeploy") {
		t.Errorf("linked clone of deployed: %v", err)
	}
	if _, err := e.svc.Configs.StartFullClone(ctx, "a", "b", lab.CreateOptions{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("full clone of deployed: %v", err)
	}
	if err := e.svc.Configs.Delete(ctx, "a"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("delete of deployed: %v", err)
	}
}

func TestConcurrentClonesOfOneSource(t *testing.T) {
	e := newEnv(t)
	e.template("base")
	e.network("lan", "10.3.0.0/24", "10.3.0.10-10.3.0.200")
	e.config("src", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base", Network: "lan"})
	qemuIO(t, top(e.get("src"), "vm1"), "write -P 7 0 4k")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := e.svc.Configs.LinkedClone(context.Background(), "src", fmt.Sprintf("c%d", i), lab.CreateOptions{})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i := 0; i < 8; i++ {
		verifyPattern(t, top(e.get(fmt.Sprintf("c%d", i)), "vm1"), 0, 4096, 7)
	}
	e.assertConsistent()
}
