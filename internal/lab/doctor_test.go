package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// TestDoctorReportsAndRepairsLeftovers plants one leftover of every kind an
// interrupted run can leave, checks that the doctor reports each (and
// changes nothing), that --repair removes each, and that a second run is
// clean. A journal entry naming a file that cannot be removed is cleared
// all the same, the file reported on its own (L1).
func TestDoctorReportsAndRepairsLeftovers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base"})
	j, err := e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitJob(e, j); err != nil {
		t.Fatal(err)
	}
	arch, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		t.Fatal(err)
	}
	archiveRoot := e.svc.Archives.Dir()
	outside := t.TempDir() // where a user exported a bundle to
	layer := top(e.get("a"), "vm1")

	type planted struct {
		path, kind string
		dir        bool
	}
	plants := []planted{
		{filepath.Join(e.dir, "layers", ".l-00000000000000aa.qcow2.tmp"), lab.ProblemTempFile, false},     // a convert's output
		{filepath.Join(e.dir, "layers", ".l-00000000000000ab.qcow2.src.tmp"), lab.ProblemTempFile, false}, // an import's copy
		{filepath.Join(e.dir, "layers", "l-00000000000000ac.qcow2"), lab.ProblemOrphanFile, false},
		{filepath.Join(e.dir, "files", ".t-0000000000aa-vmlinuz.tmp"), lab.ProblemTempFile, false},
		{filepath.Join(archiveRoot, ".a-00000000000000aa.tmp"), lab.ProblemTempFile, true}, // an archive being built
		{filepath.Join(archiveRoot, "a-00000000000000ab"), lab.ProblemOrphanFile, true},
		{filepath.Join(archiveRoot, ".bundle.tar.0a1b2c.tmp"), lab.ProblemTempFile, false},
		{filepath.Join(arch.Dir, ".vm0-disk0.qcow2.tmp"), lab.ProblemTempFile, false}, // inside a complete archive
	}
	for _, p := range plants {
		target := p.path
		if p.dir {
			if err := os.MkdirAll(p.path, 0o700); err != nil {
				t.Fatal(err)
			}
			target = filepath.Join(p.path, "disk0.qcow2")
		}
		if err := os.WriteFile(target, []byte("half-written"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A layer other users can read (M5).
	if err := os.Chmod(layer, 0o644); err != nil {
		t.Fatal(err)
	}
	// A half-written bundle beside the user's target, named by the
	// interrupted export's journal entry.
	bundleTmp := filepath.Join(outside, ".web.tar.0a1b2c.tmp")
	os.WriteFile(bundleTmp, []byte("half a tar"), 0o600)
	// An entry naming a path that cannot be removed (a non-empty
	// directory where a file was expected) and one with a NUL byte.
	stuck := filepath.Join(outside, "stuck")
	os.MkdirAll(filepath.Join(stuck, "x"), 0o700)
	for _, op := range []*store.Op{
		{Kind: "export", Subject: "arch", CreatedFiles: []string{bundleTmp}},
		{Kind: "export", Subject: "nul", CreatedFiles: []string{filepath.Join(outside, ".x\x00y.tmp")}},
		{Kind: "clone", Subject: "stuck", CreatedFiles: []string{stuck}},
	} {
		if err := e.db.Update(ctx, func(tx store.Tx) error { return tx.Ops().Create(op) }); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string]string{layer: lab.ProblemLayerMode}
	for _, p := range plants {
		want[p.path] = p.kind
	}
	for _, s := range []string{"export arch", "export nul", "clone stuck"} {
		want[s] = lab.ProblemUnfinishedOp
	}

	r, err := e.svc.Doctor(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := problemDiff(r.Problems, want); diff != "" {
		t.Errorf("doctor found:\n%s", diff)
	}
	for _, p := range plants {
		if _, err := os.Stat(p.path); err != nil {
			t.Errorf("doctor without --repair removed %s", p.path)
		}
	}

	r, err = e.svc.Doctor(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	want[stuck] = lab.ProblemOrphanFile // reported once the entry is cleared
	if diff := problemDiff(r.Problems, want); diff != "" {
		t.Errorf("doctor --repair found:\n%s", diff)
	}
	for _, p := range r.Problems {
		switch {
		case p.Subject == stuck:
			if p.Repaired || p.Repairable || !strings.Contains(p.Detail, "could not be removed") {
				t.Errorf("unremovable file: %+v, want it reported as not removed", p)
			}
		case !p.Repaired:
			t.Errorf("not repaired: %+v", p)
		}
	}
	for _, p := range append(plants, planted{path: bundleTmp}) {
		if _, err := os.Stat(p.path); !os.IsNotExist(err) {
			t.Errorf("%s after --repair: %v", p.path, err)
		}
	}
	if st, err := os.Stat(layer); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("layer after --repair: %v %v, want 0600", st, err)
	}
	if ops := journal(t, e); len(ops) != 0 {
		t.Errorf("journal after --repair: %+v", ops)
	}

	r, err = e.svc.Doctor(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		t.Errorf("after --repair: %s %s: %s", p.Kind, p.Subject, p.Detail)
	}
	if _, err := e.svc.Archives.Get(ctx, "arch"); err != nil {
		t.Errorf("the archive itself: %v", err)
	}
}

// problemDiff compares problems (subject → kind) with want and describes
// the differences, "" when there are none.
func problemDiff(got []lab.Problem, want map[string]string) string {
	var out []string
	seen := map[string]bool{}
	for _, p := range got {
		seen[p.Subject] = true
		if w, ok := want[p.Subject]; !ok || w != p.Kind {
			out = append(out, "  unexpected "+p.Kind+" "+p.Subject+": "+p.Detail+" (want "+w+")")
		}
	}
	for s, k := range want {
		if !seen[s] {
			out = append(out, "  missing "+k+" "+s)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestDoctorChecksOnlyChangedLayers: a second doctor run reads no layer
// with qemu-img again, and a write into one layer makes it read that one.
func TestDoctorChecksOnlyChangedLayers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base"}, lab.VMSpec{Name: "vm2", Template: "base"})
	e.linked("a", "b")
	run := func() *lab.DoctorReport {
		t.Helper()
		r, err := e.svc.Doctor(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range r.Problems {
			t.Errorf("doctor: %s %s: %s", p.Kind, p.Subject, p.Detail)
		}
		return r
	}
	first := run()
	if first.Checked != 5 || first.ImageChecks != first.Checked {
		t.Errorf("first run: %d layers, %d read; want 5 and 5", first.Checked, first.ImageChecks)
	}
	if r := run(); r.Checked != 5 || r.ImageChecks != 0 {
		t.Errorf("second run: %d layers, %d read; want 5 and 0", r.Checked, r.ImageChecks)
	}
	qemuIO(t, top(e.get("b"), "vm1"), "write -P 7 0 64k")
	if r := run(); r.ImageChecks != 1 {
		t.Errorf("after a write into one layer: %d read, want 1", r.ImageChecks)
	}
}
