package lab_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/labtest"
)

// snapshotTreeFixture gives configuration "a" of deployEnv (vm1, vm2) a
// snapshot tree s1 → {s2, s3 → s4 (with state)} with different data in
// vm1 at each point (s2 also zeroes a block of the template's data), its
// VMs saved (undeploy --save-state after s4), an unnamed frozen layer
// above s4 (a linked clone "a2" froze the top) and data of its own in the
// current top. It returns the pattern vm1 reads at 0..64k at each point
// ("" the current one).
func snapshotTreeFixture(t *testing.T, e *env, host *labtest.Host) map[string]byte {
	t.Helper()
	ctx := context.Background()
	write := func(cmds ...string) { qemuIO(t, top(e.get("a"), "vm1"), cmds...) }
	write("write -P 0x01 0 64k")
	qemuIO(t, top(e.get("a"), "vm2"), "write -P 0x61 0 64k")
	e.snap("a", "s1")
	write("write -P 0x02 0 64k", "write -z 512k 64k")
	e.snap("a", "s2")
	e.revert("a", "s1")
	write("write -P 0x03 0 64k")
	e.snap("a", "s3")
	if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	write("write -P 0x04 0 64k")
	if _, err := e.svc.Snapshots.Create(ctx, "a", "s4", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	e.linked("a", "a2")
	write("write -P 0x05 0 64k")
	host.Calls.Take()
	return map[string]byte{"s1": 1, "s2": 2, "s3": 3, "s4": 4, "": 5}
}

// readManifest reads the manifest an archive directory holds.
func readManifest(t *testing.T, dir string) *bundle.Manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, bundle.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkPoints checks that config, restored from an archive of
// snapshotTreeFixture, holds each point's data: its current top, and
// each snapshot through a clone of it (vm2 unchanged everywhere, s2's
// zeroes where the template had data).
func checkPoints(t *testing.T, e *env, config string, want map[string]byte) {
	t.Helper()
	ctx := context.Background()
	c := e.get(config)
	verifyPattern(t, top(c, "vm1"), 0, 65536, want[""])
	verifyPattern(t, top(c, "vm2"), 0, 65536, 0x61)
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		clone, err := e.svc.Configs.CloneFromSnapshot(ctx, config, s, config+"-at-"+s, lab.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		verifyPattern(t, top(clone, "vm1"), 0, 65536, want[s])
		verifyPattern(t, top(clone, "vm2"), 0, 65536, 0x61)
		if s == "s2" {
			verifyPattern(t, top(clone, "vm1"), 512<<10, 65536, 0)
		} else {
			verifyPattern(t, top(clone, "vm1"), 512<<10, 65536, 0xaa)
		}
		if err := e.svc.Configs.Delete(ctx, clone.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// drawTree is a snapshot list as "name<parent>depth" words, the current
// one starred.
func drawTree(e *env, config string) string {
	vs, err := e.svc.Snapshots.List(context.Background(), config)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, v := range vs {
		w := v.Name + "<" + v.Parent + ">" + string(rune('0'+v.Depth))
		if v.Current {
			w += "*"
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// TestArchiveWithSnapshots archives a configuration with a snapshot tree
// (--with-snapshots) and checks the archive: version 2, the tree, per
// disk a compressed base and a delta per point on the point below it
// (relative backing names inside the archive, read-only, checksummed),
// the snapshots' states and the VMs' saved states; without
// --with-snapshots (or without snapshots or saved VMs) the same version 1
// manifest as ever. A restore gives the same tree, each point's data,
// frozen layers of the same shape and writable tops, and saved VMs with
// copies of their states; while the archived configuration still holds
// the MACs the restore is a copy that deploys fenced only, once it is
// gone the MACs are kept and a revert to the snapshot with state resumes
// from the copied state; a snapshot delete frees only what nothing else
// references.
func TestArchiveWithSnapshots(t *testing.T) {
	e, host := deployEnv(t, nil)
	ctx := context.Background()
	want := snapshotTreeFixture(t, e, host)
	tree := drawTree(e, "a")
	if tree != "s1<>0 s2<s1>1 s3<s1>1 s4<s3>2*" {
		t.Fatalf("source tree %q", tree)
	}
	e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{WithSnapshots: true}))
	av, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	if len(av.Snapshots) != 4 || av.Snapshots[3].Name != "s4" || !av.Snapshots[3].WithState || av.Snapshots[1].Parent != "s1" {
		t.Errorf("archive view snapshots %+v; want s1..s4, s4 with state", av.Snapshots)
	}
	m := readManifest(t, av.Dir)
	if m.Version != bundle.VersionSnapshots || len(m.Snapshots) != 4 {
		t.Fatalf("manifest version %d with %d snapshots; want 2 with 4", m.Version, len(m.Snapshots))
	}
	srcSnaps := e.snapList("a")
	for _, s := range m.Snapshots {
		if !s.CreatedAt.Equal(srcSnaps[s.Name].CreatedAt) {
			t.Errorf("snapshot %s created %v in the manifest, %v in the source", s.Name, s.CreatedAt, srcSnaps[s.Name].CreatedAt)
		}
	}
	// vm1's files: a base, s1 on it, s2 and s3 on s1, s4 on s3, the
	// current top on s4.
	var shape []string
	for _, f := range m.DiskFiles(0, 0) {
		shape = append(shape, filepath.Base(f.Path)+"<"+filepath.Base(f.Backing))
	}
	if got := strings.Join(shape, " "); got != "vm0-disk0-base.qcow2<. vm0-disk0-s0.qcow2<vm0-disk0-base.qcow2 vm0-disk0-s1.qcow2<vm0-disk0-s0.qcow2 "+
		"vm0-disk0-s2.qcow2<vm0-disk0-s0.qcow2 vm0-disk0-s3.qcow2<vm0-disk0-s2.qcow2 vm0-disk0.qcow2<vm0-disk0-s3.qcow2" {
		t.Errorf("vm1's archive files (file<backing): %s", got)
	}
	for _, f := range m.Files() {
		p := filepath.Join(av.Dir, f.Path)
		if !isReadOnly(t, p) || sha(t, p) != f.SHA256 {
			t.Errorf("archive file %s: writable or not its checksum", f.Path)
		}
		if f.Backing != "" {
			if got := qemuImgBacking(t, p); got != filepath.Base(f.Backing) {
				t.Errorf("%s names backing %q; want the relative %q", f.Path, got, filepath.Base(f.Backing))
			}
		}
	}
	for i, st := range m.Snapshots[3].States {
		if sha(t, filepath.Join(av.Dir, st.File.Path)) != sha(t, srcSnaps["s4"].Layers[i].State) {
			t.Errorf("state %s differs from the snapshot's", st.File.Path)
		}
	}
	srcStates := e.stateFiles("a")
	for _, vm := range m.VMs {
		if vm.State == nil || sha(t, filepath.Join(av.Dir, vm.State.Path)) != sha(t, srcStates[vm.Name]) {
			t.Errorf("VM %s's saved state: %+v; want it archived, the source's bytes", vm.Name, vm.State)
		}
	}

	// Without --with-snapshots, and of a configuration without snapshots,
	// the manifest is version 1 as before.
	e.ok(e.svc.Archives.StartCreate(ctx, "a", "plain", lab.CreateOptions{}))
	e.ok(e.svc.Archives.StartCreate(ctx, "a2", "a2-with", lab.CreateOptions{WithSnapshots: true}))
	e.ok(e.svc.Archives.StartCreate(ctx, "a2", "a2-without", lab.CreateOptions{}))
	for _, name := range []string{"plain", "a2-with"} {
		v, _ := e.svc.Archives.Get(ctx, name)
		raw, _ := os.ReadFile(filepath.Join(v.Dir, bundle.ManifestName))
		pm := readManifest(t, v.Dir)
		if pm.Version != bundle.Version || len(v.Snapshots) != 0 || bytes.Contains(raw, []byte(`"backing"`)) || bytes.Contains(raw, []byte(`"snapshots"`)) {
			t.Errorf("archive %s: version %d, %d snapshots; want version 1 without snapshots:\n%s", name, pm.Version, len(v.Snapshots), raw)
		}
	}
	w1, _ := e.svc.Archives.Get(ctx, "a2-with")
	w2, _ := e.svc.Archives.Get(ctx, "a2-without")
	m1, m2 := readManifest(t, w1.Dir), readManifest(t, w2.Dir)
	m1.Name, m1.CreatedAt = m2.Name, m2.CreatedAt
	j1, _ := json.Marshal(m1)
	j2, _ := json.Marshal(m2)
	if !bytes.Equal(j1, j2) {
		t.Errorf("a configuration without snapshots archived --with-snapshots:\n%s\nwithout:\n%s", j1, j2)
	}

	// Restored while "a" exists: the tree and every point, layers of the
	// same shape; the archived MACs are in use, so it is a copy that
	// deploys fenced only.
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "b", lab.CreateOptions{}))
	if got := drawTree(e, "b"); got != tree {
		t.Errorf("restored tree %q, want %q", got, tree)
	}
	b := e.get("b")
	if chain := chainOf(b, "vm1"); len(chain) != 5 {
		t.Errorf("restored vm1 chain %v; want top, s4, s3, s1, base", chain)
	} else {
		for i, l := range chain {
			if isReadOnly(t, l) != (i > 0) {
				t.Errorf("restored layer %d of vm1 (%s): read-only %v", i, l, isReadOnly(t, l))
			}
		}
	}
	bs := e.snapList("b")
	for name, s := range srcSnaps {
		if !bs[name].CreatedAt.Equal(s.CreatedAt) || bs[name].WithState != s.WithState {
			t.Errorf("restored snapshot %s: %+v, source %+v", name, bs[name], s)
		}
	}
	checkPoints(t, e, "b", want)
	for i, v := range b.VMs {
		if v.State != lab.VMStateSaved || !v.HasSavedState || sha(t, e.stateFiles("b")[v.Name]) != sha(t, srcStates[v.Name]) {
			t.Errorf("restored VM %d %s: %s, saved state %v; want saved with a copy of the archived state", i, v.Name, v.State, v.HasSavedState)
		}
	}
	if b.VMs[0].NICs[0].MAC != e.get("a").VMs[0].NICs[0].MAC {
		t.Errorf("restored MAC %s, archived %s: a snapshot with state keeps the MACs", b.VMs[0].NICs[0].MAC, e.get("a").VMs[0].NICs[0].MAC)
	}
	if _, err := e.svc.Deployments.Deploy(ctx, "b", lab.DeployOptions{}); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--fenced") {
		t.Errorf("unfenced deploy of a restore sharing MACs with its source: %v; want refused, saying --fenced", err)
	}
	e.assertConsistent()

	// Deleting s2 frees its layers only; deleting s1 (children build on
	// it) frees nothing.
	before := len(dataFiles(t, e.dir))
	if err := e.svc.Snapshots.Delete(ctx, "b", "s2"); err != nil {
		t.Fatal(err)
	}
	if n := len(dataFiles(t, e.dir)); before-n != 2 {
		t.Errorf("deleting s2 of the restore removed %d files; want its 2 layers", before-n)
	}
	if err := e.svc.Snapshots.Delete(ctx, "b", "s1"); err != nil {
		t.Fatal(err)
	}
	if n := len(dataFiles(t, e.dir)); before-n != 2 {
		t.Errorf("deleting s1 of the restore removed %d more files; want none", before-n-2)
	}
	verifyPattern(t, top(e.get("b"), "vm1"), 0, 65536, want[""])
	e.assertConsistent()

	// With the archived configuration gone, a restore keeps its MACs
	// and deploys anyhow; a revert to s4 resumes from s4's state.
	for _, c := range []string{"b", "a2", "a"} {
		if err := e.svc.Configs.Delete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "c", lab.CreateOptions{}))
	if _, err := e.svc.Snapshots.Revert(ctx, "c", "s4"); err != nil {
		t.Fatal(err)
	}
	verifyPattern(t, top(e.get("c"), "vm1"), 0, 65536, 4)
	host.Calls.Take()
	if _, err := e.svc.Deployments.Deploy(ctx, "c", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if starts := startCalls(host); len(starts) != 2 || strings.Contains(strings.Join(starts, "\n"), "resume=-") {
		t.Errorf("deploy after a revert to s4 started %q; want both VMs resumed", starts)
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "c", false); err != nil {
		t.Fatal(err)
	}
	e.assertConsistent()
}

// qemuImgBacking is the backing file name a qcow2 header records.
func qemuImgBacking(t *testing.T, path string) string {
	t.Helper()
	var info struct {
		Backing string `json:"backing-filename"`
	}
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Backing
}

// snapshotBundle archives snapshotTreeFixture's "a" with its snapshots in
// a first lab and exports it.
func snapshotBundle(t *testing.T) (string, map[string]byte) {
	t.Helper()
	e, host := deployEnv(t, nil)
	want := snapshotTreeFixture(t, e, host)
	e.ok(e.svc.Archives.StartCreate(context.Background(), "a", "arch", lab.CreateOptions{WithSnapshots: true}))
	file := filepath.Join(t.TempDir(), "arch.tar")
	exportBundle(t, e.svc, "arch", file)
	return file, want
}

// TestSnapshotBundleOnAnotherLab carries an archive with snapshots to
// another lab as a bundle: import checks every file, and the restore has
// the tree and every point's data.
func TestSnapshotBundleOnAnotherLab(t *testing.T) {
	file, want := snapshotBundle(t)
	ctx := context.Background()
	e2 := newEnv(t)
	e2.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e2.ok(e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file, Name: "moved"}))
	av, err := e2.svc.Archives.Get(ctx, "moved")
	if err != nil {
		t.Fatal(err)
	}
	if len(av.Snapshots) != 4 {
		t.Fatalf("imported archive: %d snapshots, want 4", len(av.Snapshots))
	}
	e2.ok(e2.svc.Archives.StartRestore(ctx, "moved", "here", lab.CreateOptions{}))
	if got := drawTree(e2, "here"); got != "s1<>0 s2<s1>1 s3<s1>1 s4<s3>2*" {
		t.Errorf("tree on the other lab: %q", got)
	}
	checkPoints(t, e2, "here", want)
	e2.assertFrozenHashed() // a restore hashes what it freezes, as a clone does
	e2.assertConsistent()
}

// rewriteBundle rebuilds bundle good with its manifest and files edited
// by edit (files by path; the manifest's sizes and checksums follow the
// files unless keepSums), its checksum entry matching the new manifest.
func rewriteBundle(t *testing.T, good []byte, keepSums bool, edit func(m *bundle.Manifest, files map[string][]byte)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(good))
	files := map[string][]byte{}
	var m *bundle.Manifest
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case bundle.ManifestName:
			if m, err = bundle.Parse(data); err != nil {
				t.Fatal(err)
			}
		case "manifest.json.sha256":
		default:
			files[h.Name] = data
		}
	}
	edit(m, files)
	if !keepSums {
		for _, f := range m.Files() {
			if data, ok := files[f.Path]; ok {
				sum := sha256.Sum256(data)
				f.Size, f.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
			}
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	entries := []bundleEntry{{bundle.ManifestName, raw}, {"manifest.json.sha256", []byte(hex.EncodeToString(sum[:]) + "\n")}}
	for _, f := range m.Files() {
		entries = append(entries, bundleEntry{f.Path, files[f.Path]})
	}
	return tarOf(t, entries)
}

// TestImportRefusesHostileSnapshotBundles: a bundle whose snapshot layer,
// snapshot state or VM's saved state was changed, whose manifest points a backing file outside the
// archive or in a loop, whose snapshot tree loops, or whose delta's header
// names another file than its manifest says, is refused with a clear
// error and leaves nothing behind; the good one imports.
func TestImportRefusesHostileSnapshotBundles(t *testing.T) {
	file, _ := snapshotBundle(t)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	layer := func(m *bundle.Manifest, s int) *bundle.File { return &m.Snapshots[s].Disks[0].File }
	cases := []struct {
		name, want string
		keepSums   bool
		edit       func(m *bundle.Manifest, files map[string][]byte)
	}{
		{"flipped byte in a snapshot layer", "sha256", true, func(m *bundle.Manifest, files map[string][]byte) {
			b := files[layer(m, 2).Path]
			b[len(b)/2] ^= 1
		}},
		{"flipped byte in a state", "sha256", true, func(m *bundle.Manifest, files map[string][]byte) {
			files[m.Snapshots[3].States[0].File.Path][10] ^= 1
		}},
		{"flipped byte in a VM's saved state", "sha256", true, func(m *bundle.Manifest, files map[string][]byte) {
			files[m.VMs[1].State.Path][10] ^= 1
		}},
		{"backing outside the archive", "reads through", false, func(m *bundle.Manifest, files map[string][]byte) {
			layer(m, 1).Backing = "../../layers/x.qcow2"
		}},
		{"backing loop", "reads through", false, func(m *bundle.Manifest, files map[string][]byte) {
			layer(m, 0).Backing = layer(m, 1).Path
		}},
		{"snapshot tree loop", "not a snapshot listed before it", false, func(m *bundle.Manifest, files map[string][]byte) {
			m.Snapshots[0].Parent = "s4"
		}},
		{"a delta naming another backing file than the manifest", "names backing file", false, func(m *bundle.Manifest, files map[string][]byte) {
			// s4's layer (on s3) where s2's (on s1) should be.
			files[layer(m, 1).Path] = files[layer(m, 3).Path]
		}},
		{"a standalone image where a delta should be", "names backing file", false, func(m *bundle.Manifest, files map[string][]byte) {
			files[layer(m, 1).Path] = files[m.VMs[0].Disks[0].Base.Path]
		}},
	}
	e2 := newEnv(t)
	e2.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	ctx := context.Background()
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.tar")
			if err := os.WriteFile(bad, rewriteBundle(t, good, c.keepSums, c.edit), 0o600); err != nil {
				t.Fatal(err)
			}
			j, err := e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: bad})
			if err == nil {
				if j = e2.wait(j, nil); j.State != jobs.Failed {
					t.Fatalf("import of a hostile bundle: %s", j.State)
				}
				err = errors.New(j.Error)
			} else if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("refused as %v, want invalid", err)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("refused with %q; want it to say %q", err, c.want)
			}
			if as, _ := e2.svc.Archives.List(ctx); len(as) != 0 {
				t.Errorf("archives after a refused import: %+v", as)
			}
			if ds := archiveDirs(t, e2); len(ds) != 0 {
				t.Errorf("archive dirs after a refused import: %v", ds)
			}
		})
	}
	e2.ok(e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file}))
	e2.assertConsistent()
}

// jobErr runs a job to its end and returns its failure, if any.
func (e *env) jobErr(j jobs.Job, err error) error {
	e.t.Helper()
	if err != nil {
		return err
	}
	if j = e.wait(j, nil); j.State != jobs.Succeeded {
		return errors.New(j.Error)
	}
	return nil
}

// archiveState is what an archive operation may change: the
// configurations, their VMs' states, layers and files, every snapshot
// tree, the archives and their directories, the snapshots' and the VMs'
// state files.
func archiveState(e *env) string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString(e.snapshot())
	cs, _ := e.svc.Configs.List(ctx)
	for _, c := range cs {
		b.WriteString(" tree " + c.Name + ": " + drawTree(e, c.Name))
		for _, v := range c.VMs {
			b.WriteString(" " + c.Name + "/" + v.Name + " " + v.State)
		}
	}
	as, _ := e.svc.Archives.List(ctx)
	for _, a := range as {
		b.WriteString(" archive " + a.Name)
	}
	b.WriteString(" dirs " + strings.Join(archiveDirs(e.t, e), ","))
	states, _ := filepath.Glob(filepath.Join(e.dir, "snapshots", "*"))
	saved, _ := filepath.Glob(filepath.Join(e.dir, "state", "*"))
	b.WriteString(" states " + strings.Join(append(states, saved...), ","))
	return b.String()
}

// TestEveryArchiveSnapshotStepRollsBack fails each step of an archive
// --with-snapshots (of snapshotTreeFixture, whose VMs are saved: copying
// their states is a step of each), of its restore and of its bundle's
// import in turn (on a fresh lab each time, set up by deployEnv): each
// failure is reported, leaves the lab as it was, and the doctor finds
// nothing.
func TestEveryArchiveSnapshotStepRollsBack(t *testing.T) {
	ctx := context.Background()
	file, _ := snapshotBundle(t)
	ops := []struct {
		kind  string
		setup func(e *env, host *labtest.Host)
		run   func(e *env) error
	}{
		{"archive", func(e *env, host *labtest.Host) { snapshotTreeFixture(t, e, host) }, func(e *env) error {
			return e.jobErr(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{WithSnapshots: true}))
		}},
		{"restore", func(e *env, host *labtest.Host) {
			snapshotTreeFixture(t, e, host)
			e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{WithSnapshots: true}))
		}, func(e *env) error {
			return e.jobErr(e.svc.Archives.StartRestore(ctx, "arch", "b", lab.CreateOptions{}))
		}},
		{"archive-import", func(*env, *labtest.Host) {}, func(e *env) error {
			return e.jobErr(e.svc.Archives.StartImport(ctx, lab.ImportSpec{File: file}))
		}},
	}
	for _, op := range ops {
		t.Run(op.kind, func(t *testing.T) {
			f := &faults{}
			for k := 1; ; k++ {
				e, host := deployEnv(t, f)
				op.setup(e, host)
				before := archiveState(e)
				f.arm(op.kind, k)
				err := op.run(e)
				f.mu.Lock()
				seen, steps := f.seen, f.steps
				f.mu.Unlock()
				if seen < k {
					if err != nil {
						t.Fatalf("unfailed run: %v", err)
					}
					t.Logf("%s: %d steps, each failure rolled back: %v", op.kind, k-1, steps)
					e.assertConsistent()
					return
				}
				if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
					t.Fatalf("step %d (%s): error %v, want the injected failure", k, steps[k-1], err)
				}
				if after := archiveState(e); after != before {
					t.Errorf("step %d (%s) left changes:\nbefore %s\nafter  %s", k, steps[k-1], before, after)
				}
				e.assertConsistent()
			}
		})
	}
}
