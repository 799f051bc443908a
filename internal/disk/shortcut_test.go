package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"stagehand/internal/errdefs"
)

// buildDeepChain makes base.qcow2 <- l01.qcow2 <- ... in dir, depth
// layers in all (base included), each delta recorded by relative name as
// the lab records them. The base holds 0xaa over 0..32M; delta i writes
// pattern i at i MiB (over base data), overwrites part of delta i-1's
// region, and every 7th hides base data with zeroes. It returns the
// layers, base first; all but the last are frozen (0400).
func buildDeepChain(t testing.TB, dir string, depth int) []string {
	t.Helper()
	layers := []string{newQcow2(t, join(dir, "base.qcow2"), "64M")}
	qemuIO(t, layers[0], "write -q -P 0xaa 0 32M")
	for i := 1; i < depth; i++ {
		path := join(dir, fmt.Sprintf("l%02d.qcow2", i))
		parent := fmt.Sprintf("l%02d.qcow2", i-1)
		if i == 1 {
			parent = "base.qcow2"
		}
		runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", parent, path)
		cmds := []string{
			fmt.Sprintf("write -q -P %d %dM 512k", i, i),
			fmt.Sprintf("write -q -P %d %dk 128k", 0x80+i, (i-1)*1024+256), // over delta i-1
		}
		if i%7 == 0 {
			cmds = append(cmds, fmt.Sprintf("write -q -z %dk 64k", i*1024+768)) // hides 0xaa
		}
		qemuIO(t, path, cmds...)
		layers = append(layers, path)
	}
	for _, l := range layers[:len(layers)-1] {
		if err := os.Chmod(l, modeFrozen); err != nil {
			t.Fatal(err)
		}
	}
	return layers
}

func TestShortcutDepth30(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	layers := buildDeepChain(t, dir, 30) // base, l01..l28 frozen, l29 writable
	top := layers[29]
	sums := map[string]string{}
	for _, l := range layers[:29] {
		sums[l] = sha256File(t, l)
	}
	// References of the old chains, made before anything is rebased:
	// copies of the children, which name their parents by the same
	// relative names.
	oldL26 := copyFile(t, layers[26], join(dir, "old-l26.qcow2"))
	oldTop := copyFile(t, top, join(dir, "old-top.qcow2"))
	fi, err := os.Stat(top)
	if err != nil {
		t.Fatal(err)
	}
	topMode := fi.Mode().Perm()

	q := New()
	sc := join(dir, "sc-01-25.qcow2")
	if err := q.BuildShortcut(ctx, layers[25], layers[0], sc); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sc); err != nil || fi.Mode().Perm() != modeFrozen {
		t.Fatalf("shortcut mode = %v, %v; want read-only %v", fi.Mode().Perm(), err, os.FileMode(modeFrozen))
	}
	if got := recordedBacking(t, sc); got != "base.qcow2" {
		t.Errorf("shortcut records backing %q, want base.qcow2", got)
	}
	if eq, err := Compare(ctx, layers[25], sc); err != nil || !eq {
		t.Fatalf("Compare(l25, shortcut) = %v, %v", eq, err)
	}

	// A frozen child: layer 26.
	if err := q.RebaseOnto(ctx, layers[26], layers[25], sc); err != nil {
		t.Fatal(err)
	}
	if got := recordedBacking(t, layers[26]); got != "sc-01-25.qcow2" {
		t.Errorf("l26 records backing %q, want sc-01-25.qcow2", got)
	}
	if eq, err := Compare(ctx, oldL26, layers[26]); err != nil || !eq {
		t.Fatalf("Compare(old l26 chain, new l26 chain) = %v, %v", eq, err)
	}
	if fi, _ := os.Stat(layers[26]); fi.Mode().Perm() != modeFrozen {
		t.Errorf("l26 mode %v after rebase, want it kept frozen", fi.Mode().Perm())
	}
	chain, err := q.Chain(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{top, layers[28], layers[27], layers[26], sc, layers[0]}
	if !slices.Equal(chain, want) {
		t.Fatalf("top's chain after the shortcut = %q, want %q", chain, want)
	}
	if eq, err := Compare(ctx, oldTop, top); err != nil || !eq {
		t.Fatalf("Compare(old top chain, top through the shortcut) = %v, %v", eq, err)
	}

	// The writable top: a shortcut of everything frozen above the base.
	sc2 := join(dir, "sc-26-28.qcow2")
	if err := q.BuildShortcut(ctx, layers[28], layers[0], sc2); err != nil {
		t.Fatal(err)
	}
	if err := q.RebaseOnto(ctx, top, layers[28], sc2); err != nil {
		t.Fatal(err)
	}
	if eq, err := Compare(ctx, oldTop, top); err != nil || !eq {
		t.Fatalf("Compare(old top chain, top on its shortcut) = %v, %v", eq, err)
	}
	if chain, _ := q.Chain(ctx, top); len(chain) != 3 {
		t.Fatalf("top's chain = %q, want top, shortcut, base", chain)
	}
	if err := q.Check(ctx, top); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(top); fi.Mode().Perm() != topMode {
		t.Errorf("top mode %v after rebase, want %v as before", fi.Mode().Perm(), topMode)
	}
	for _, l := range layers[:29] {
		if l == layers[26] {
			continue // its header names the shortcut now
		}
		if sha256File(t, l) != sums[l] {
			t.Errorf("%s changed", l)
		}
	}
}

// TestShortcutToBase: with no parent the shortcut is a standalone base.
func TestShortcutToBase(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	layers := buildDeepChain(t, dir, 6)
	q := New()
	sc := join(dir, "sc.qcow2")
	if err := q.BuildShortcut(ctx, layers[4], "", sc); err != nil {
		t.Fatal(err)
	}
	if info, err := q.Info(ctx, sc); err != nil || info.BackingFile != "" {
		t.Fatalf("Info(shortcut) = %+v, %v; want no backing file", info, err)
	}
	old := copyFile(t, layers[5], join(dir, "old-top.qcow2"))
	if err := q.RebaseOnto(ctx, layers[5], layers[4], sc); err != nil {
		t.Fatal(err)
	}
	if eq, err := Compare(ctx, old, layers[5]); err != nil || !eq {
		t.Fatalf("Compare(old top, new top) = %v, %v", eq, err)
	}
}

// TestConvertWithBackingLosesRunData shows why BuildShortcut does not use
// `qemu-img convert -B parent`: in QEMU 7.2 it copies only the clusters of
// the source's top layer, so a run of several layers loses data.
func TestConvertWithBackingLosesRunData(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	layers := buildDeepChain(t, dir, 4)
	out := join(dir, "convert-B.qcow2")
	runTool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", layers[2], out)
	if eq, err := Compare(ctx, layers[2], out); err != nil || eq {
		t.Fatalf("Compare(run top, convert -B) = %v, %v; want different (if equal, convert -B became an option)", eq, err)
	}
}

func TestShortcutRefusals(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	layers := buildDeepChain(t, dir, 5)
	other := t.TempDir()
	otherLayers := buildDeepChain(t, other, 3)
	q := New()
	before := dirNames(t, dir)

	// A parent that is not below the run's top.
	err := q.BuildShortcut(ctx, layers[2], otherLayers[0], join(dir, "sc.qcow2"))
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("BuildShortcut on a foreign parent = %v, want invalid", err)
	}
	err = q.BuildShortcut(ctx, layers[2], layers[3], join(dir, "sc.qcow2"))
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("BuildShortcut on a parent above the top = %v, want invalid", err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, before) {
		t.Fatalf("refused BuildShortcut left files: %q, was %q", got, before)
	}
	// An existing destination is never overwritten.
	if err := q.BuildShortcut(ctx, layers[2], layers[0], layers[1]); !errors.Is(err, os.ErrExist) {
		t.Fatalf("BuildShortcut onto an existing layer = %v, want ErrExist", err)
	}

	sc := join(dir, "sc.qcow2")
	if err := q.BuildShortcut(ctx, layers[2], layers[0], sc); err != nil {
		t.Fatal(err)
	}
	// The child's parent is not the run's top.
	if err := q.RebaseOnto(ctx, layers[4], layers[2], sc); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("RebaseOnto with the wrong old parent = %v, want conflict", err)
	}
	// A shortcut of another chain.
	otherSc := join(other, "sc.qcow2")
	if err := q.BuildShortcut(ctx, otherLayers[1], otherLayers[0], otherSc); err != nil {
		t.Fatal(err)
	}
	if err := q.RebaseOnto(ctx, layers[3], layers[2], otherSc); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("RebaseOnto a foreign shortcut = %v, want invalid", err)
	}
	if got := recordedBacking(t, layers[3]); got != "l02.qcow2" {
		t.Fatalf("refused rebase changed the backing name to %q", got)
	}
}

// TestShortcutCanceled cancels BuildShortcut while qemu-img writes the
// temporary file, on both paths (rebase onto a parent, convert to a
// base): nothing is left behind.
func TestShortcutCanceled(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	base := newQcow2(t, join(dir, "base.qcow2"), "512M")
	l1 := newDelta(t, base, join(dir, "l1.qcow2"))
	qemuIO(t, l1, "write -q -P 0x11 0 160M")
	l2 := newDelta(t, l1, join(dir, "l2.qcow2"))
	qemuIO(t, l2, "write -q -P 0x22 200M 160M")
	for _, parent := range []string{base, ""} {
		t.Run(fmt.Sprintf("parent=%q", orNone(parent)), func(t *testing.T) {
			before := dirNames(t, dir)
			dst := join(dir, "sc.qcow2")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Cancel once qemu-img has written some of the file.
			go func() {
				for ctx.Err() == nil {
					if fi, err := os.Stat(TempPath(dst)); err == nil && fi.Size() > 8<<20 {
						cancel()
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			err := New().BuildShortcut(ctx, l2, parent, dst)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("BuildShortcut canceled = %v, want context.Canceled", err)
			}
			if got := dirNames(t, dir); !slices.Equal(got, before) {
				t.Fatalf("canceled BuildShortcut left files: %q, was %q", got, before)
			}
		})
	}
}
