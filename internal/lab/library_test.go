package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
)

// withFakeRuntime gives the lab a fake host: lifecycle tests put
// configurations in the deployed state through the store and let the lab
// undeploy them.
func withFakeRuntime(o *lab.Options) { labtest.NewHost().Use(o) }

// layerBytes returns the bytes allocated by every file in the layers dir.
func layerBytes(t testing.TB, dir string) int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "layers", "*"))
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Sys().(*syscall.Stat_t).Blocks * 512
	}
	return n
}

func TestCaptureCheckoutModifyCapture(t *testing.T) {
	e := newEnv(t, withFakeRuntime)
	ctx := context.Background()
	e.template("base")
	e.network("lan", "10.70.0.0/24", "10.70.0.10-10.70.0.20")
	a := e.config("a", lab.VMSpec{Name: "vm", Template: "base", Network: "lan"})
	qemuIO(t, top(a, "vm"), "write -P 0x11 1M 8M")

	// Capture: a linked clone, so only small files, whatever the data.
	before := layerBytes(t, e.dir)
	lib1, err := e.svc.Library.Capture(ctx, "a", "lib1", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if grew := layerBytes(t, e.dir) - before; grew > 2<<20 {
		t.Errorf("capture wrote %d bytes, want only two small deltas", grew)
	}
	a = e.get("a")
	if lib1.Kind != "library" || len(chainOf(lib1, "vm")) != 3 || chainOf(lib1, "vm")[1] != chainOf(a, "vm")[1] {
		t.Fatalf("lib1: kind %q chain %v; a's chain %v", lib1.Kind, chainOf(lib1, "vm"), chainOf(a, "vm"))
	}
	if !isReadOnly(t, chainOf(a, "vm")[1]) {
		t.Errorf("capture did not freeze a's data layer")
	}
	verifyPattern(t, top(lib1, "vm"), 1<<20, 8<<20, 0x11)
	if lib1.VMs[0].NICs[0].IP != a.VMs[0].NICs[0].IP {
		t.Errorf("library entry IP %s, source %s: want the same", lib1.VMs[0].NICs[0].IP, a.VMs[0].NICs[0].IP)
	}

	// Read-only: no deploy, no address change, no consolidation, no
	// config delete; and config list does not show it.
	if _, err := e.svc.Deployments.Deploy(ctx, "lib1", lab.DeployOptions{}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "library entry") {
		t.Errorf("deploy of a library entry: %v, want a conflict naming the library entry", err)
	}
	if _, err := e.svc.Networks.ChangeIPs(ctx, "lib1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("change-ips of a library entry: %v", err)
	}
	if _, err := e.svc.Configs.StartConsolidate(ctx, "lib1", "vm", 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("consolidate of a library entry: %v", err)
	}
	if err := e.svc.Configs.Delete(ctx, "lib1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("config delete of a library entry: %v", err)
	}
	if err := e.svc.Library.Delete(ctx, "a"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("library delete of a configuration: %v", err)
	}
	if _, err := e.svc.Library.Capture(ctx, "lib1", "x", lab.CreateOptions{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("capture of a library entry: %v", err)
	}
	if _, err := e.svc.Library.Checkout(ctx, "a", "x", lab.CreateOptions{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("checkout of a configuration: %v", err)
	}
	cs, _ := e.svc.Configs.List(ctx)
	ls, _ := e.svc.Library.List(ctx)
	if len(cs) != 1 || cs[0].Name != "a" || len(ls) != 1 || ls[0].Name != "lib1" {
		t.Errorf("config list %d, library list %d: want a and lib1 apart", len(cs), len(ls))
	}

	// Checkout: the entry's top is empty, so the workspace builds on the
	// frozen layer the capture made (3 layers, not 4).
	w, err := e.svc.Library.Checkout(ctx, "lib1", "w", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Kind != "config" || len(chainOf(w, "vm")) != 3 || chainOf(w, "vm")[1] != chainOf(lib1, "vm")[1] {
		t.Fatalf("w: kind %q chain %v", w.Kind, chainOf(w, "vm"))
	}
	qemuIO(t, top(w, "vm"), "write -P 0x22 16M 1M")

	// Capture again: w's data layer is frozen under the new entry.
	lib2, err := e.svc.Library.Capture(ctx, "w", "lib2", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w = e.get("w")
	if len(chainOf(lib2, "vm")) != 4 || chainOf(lib2, "vm")[1] != chainOf(w, "vm")[1] || chainOf(lib2, "vm")[2] != chainOf(lib1, "vm")[1] {
		t.Fatalf("lib2 chain %v, w chain %v", chainOf(lib2, "vm"), chainOf(w, "vm"))
	}
	verifyPattern(t, top(lib2, "vm"), 16<<20, 1<<20, 0x22)
	verifyPattern(t, top(lib1, "vm"), 16<<20, 1<<20, 0x00)
	w2, err := e.svc.Library.Checkout(ctx, "lib2", "w2", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	verifyPattern(t, top(w2, "vm"), 1<<20, 8<<20, 0x11)
	verifyPattern(t, top(w2, "vm"), 16<<20, 1<<20, 0x22)

	// Space: deleting lib1 frees only its own empty delta; the 8 MiB layer
	// stays (a, w, lib2 and w2 build on it). Cleanup predicts it exactly.
	dataLayer := chainOf(lib1, "vm")[1]
	rep, err := e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{IdleDays: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 0 {
		t.Errorf("nothing expired, yet cleanup lists %+v", rep.Items)
	}
	before = layerBytes(t, e.dir)
	if err := e.svc.Library.Delete(ctx, "lib1"); err != nil {
		t.Fatal(err)
	}
	if freed := before - layerBytes(t, e.dir); freed <= 0 || freed > 1<<20 {
		t.Errorf("deleting lib1 freed %d bytes, want only its empty delta", freed)
	}
	if _, err := os.Stat(dataLayer); err != nil {
		t.Errorf("shared data layer gone with lib1: %v", err)
	}
	for _, n := range []string{"a", "w", "w2"} {
		if err := e.svc.Configs.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(dataLayer); err != nil {
		t.Errorf("data layer gone while lib2 still builds on it: %v", err)
	}
	if err := e.svc.Library.Delete(ctx, "lib2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dataLayer); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data layer kept after its last user went: %v", err)
	}
	e.assertConsistent()

	// Every operation is in the event log.
	evs, err := e.svc.Events.List(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Action+":"+ev.Object+":"+ev.Subject+":"+ev.Result)
	}
	joined := strings.Join(got, " ")
	for _, want := range []string{"capture:library:lib1:ok", "checkout:config:w:ok", "capture:library:lib2:ok", "delete:library:lib1:ok", "delete:config:a:ok"} {
		if !strings.Contains(joined, want) {
			t.Errorf("events lack %s: %s", want, joined)
		}
	}
}

// TestCleanupSpaceOnSharedTree builds a tree of shared layers, lets some
// storage leases run out and checks that cleanup's "space freed" is the
// space the deletions really free, for each item alone and together.
func TestCleanupSpaceOnSharedTree(t *testing.T) {
	clock := newClock()
	e := newEnv(t, func(o *lab.Options) { o.Now = clock.Now })
	ctx := context.Background()
	e.template("base")
	root := e.config("root", lab.VMSpec{Name: "vm", Template: "base"})
	qemuIO(t, top(root, "vm"), "write -P 0x01 0 4M")
	e.linked("root", "b")
	qemuIO(t, top(e.get("b"), "vm"), "write -P 0x02 4M 2M")
	e.linked("b", "c")
	e.linked("b", "d")
	qemuIO(t, top(e.get("c"), "vm"), "write -P 0x03 8M 1M")
	qemuIO(t, top(e.get("d"), "vm"), "write -P 0x04 8M 3M")
	if _, err := e.svc.Library.Capture(ctx, "c", "lib", lab.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "c", "d", "lib"} {
		d := day
		if _, err := e.svc.Leases.Set(ctx, n, lab.LeaseChange{Storage: &d}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * day)

	rep, err := e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 4 {
		t.Fatalf("cleanup lists %d items, want b, c, d and lib: %+v", len(rep.Items), rep.Items)
	}
	var sum int64
	for _, it := range rep.Items {
		sum += it.Frees
	}
	// b, c and d share frozen layers: together they free more than the
	// sum of each alone.
	if rep.Frees <= sum {
		t.Errorf("together %d bytes, alone %d in all: shared layers should count only together", rep.Frees, sum)
	}
	dry, err := e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{Apply: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Applied || dry.Frees != rep.Frees {
		t.Errorf("dry run: applied %v, frees %d (view %d)", dry.Applied, dry.Frees, rep.Frees)
	}
	if _, err := e.svc.Configs.Get(ctx, "b"); err != nil {
		t.Errorf("dry run deleted b: %v", err)
	}

	before := layerBytes(t, e.dir)
	done, err := e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	freed := before - layerBytes(t, e.dir)
	if done.Freed != freed || done.Freed != rep.Frees {
		t.Errorf("cleanup said %d (view %d), the layers dir shrank by %d", done.Freed, rep.Frees, freed)
	}
	for _, it := range done.Items {
		if !it.Deleted {
			t.Errorf("%s %s not deleted: %s", it.Object, it.Name, it.Error)
		}
	}
	verifyPattern(t, top(e.get("root"), "vm"), 0, 4<<20, 0x01)
	e.assertConsistent()
}

func TestCleanupIdle(t *testing.T) {
	clock := newClock()
	e := newEnv(t, func(o *lab.Options) { o.Now = clock.Now })
	ctx := context.Background()
	e.template("base")
	e.config("a", lab.VMSpec{Name: "vm", Template: "base"})
	if _, err := e.svc.Library.Capture(ctx, "a", "lib", lab.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.ok(e.svc.Archives.StartCreate(ctx, "a", "arch", lab.CreateOptions{}))
	clock.Advance(10 * day)
	if _, err := e.svc.Library.Checkout(ctx, "lib", "ws", lab.CreateOptions{}); err != nil { // lib used now, ws new
		t.Fatal(err)
	}
	names := func(r *lab.CleanupReport) string {
		var out []string
		for _, it := range r.Items {
			out = append(out, it.Object+":"+it.Name+":"+strings.Join(it.Reasons, ","))
		}
		return strings.Join(out, " ")
	}
	rep, err := e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{IdleDays: 7})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rep); got != "config:a:idle 10 days archive:arch:idle 10 days" {
		t.Errorf("idle 7 days: %q", got)
	}
	if rep, _ = e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{IdleDays: 11}); len(rep.Items) != 0 {
		t.Errorf("idle 11 days: %q", names(rep))
	}
	if rep, _ = e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{}); len(rep.Items) != 0 {
		t.Errorf("without --idle-days nothing expired is listed: %q", names(rep))
	}
}
