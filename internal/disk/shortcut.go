package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"stagehand/internal/command"
	"stagehand/internal/errdefs"
)

// A deep chain reads slowly: every read that falls through costs a lookup
// in each layer (measured with qemu-img bench: depth 30 reads at about a
// third of the speed of depth 1). A shortcut is one new frozen layer with
// the guest-visible content of a run of consecutive frozen layers, backed
// by the run's own parent; the run's children are then rebased onto it
// (header only, see RebaseOnto) and read through one layer instead of the
// run. The run itself is left alone, for whatever else still refers to it.

// BuildShortcut writes at dst a new read-only qcow2 layer whose backing
// file is parent and whose guest-visible content equals runTop's. The run
// is the layers of runTop's chain above parent: from runTop down to the
// layer whose backing file is parent. parent "" means the run reaches the
// base, and the shortcut is then a standalone base. The layers of the run
// are only read; they must be frozen (no writer), since the result is
// checked against them with qemu-img compare before it is published. dst
// is written under TempPath(dst) and renamed into place, read-only (0400),
// once complete, verified and synced; on any failure or cancellation
// nothing is left at either name.
//
// How it is built, with parent set: an empty delta on runTop is rebased in
// safe mode onto parent (`qemu-img rebase -b parent`). Safe rebase writes
// into the delta every cluster whose content differs between the old
// chain and the new one; when parent is in the old chain it reads only
// the clusters allocated above parent, so it copies exactly the run's data
// (zero writes that hide parent's data included) and never reads the rest
// of parent (measured: 0.17 s for 25 small layers over a 256 MiB base,
// where the qemu-img compare that verifies it, which reads everything,
// takes 0.42 s). `qemu-img convert -B parent` is not
// an alternative: in QEMU 7.2 it copies only the clusters allocated in the
// source's top layer (it assumes the source's backing is the output's),
// so a run of more than one layer would lose data; the tests show it.
// Without a parent the run is the whole chain, and the parallel convert
// of Consolidate is the faster way to write it.
func (q *QemuImg) BuildShortcut(ctx context.Context, runTop, parent, dst string) (err error) {
	if err := absPaths(&runTop, &dst); err != nil {
		return err
	}
	if parent != "" {
		if err := absPaths(&parent); err != nil {
			return err
		}
	}
	bottom := "(unknown)"
	defer func() {
		if err != nil {
			err = fmt.Errorf("shortcut %q for layers %q..%q on %q: %w", dst, bottom, runTop, orNone(parent), err)
		}
	}()
	chain, err := q.Chain(ctx, runTop)
	if err != nil {
		return err
	}
	run, err := runAbove(chain, parent)
	if err != nil {
		return err
	}
	bottom = run[len(run)-1]
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%q: %w", dst, os.ErrExist)
	}
	began := time.Now()
	tmp, err := reserveTemp(dst)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := q.writeShortcut(ctx, runTop, parent, dst, tmp); err != nil {
		return err
	}
	// A cancel that lands after qemu-img finished still means "leave
	// nothing": the caller has given up on the result.
	if err := ctx.Err(); err != nil {
		return err
	}
	// tmp lies in dst's directory, so its relative backing name resolves
	// as dst's will.
	equal, err := q.compare(ctx, runTop, tmp)
	if err != nil {
		return err
	}
	if !equal {
		return fmt.Errorf("verify: qemu-img compare found the shortcut differs from %q", runTop)
	}
	if err := publishAs(tmp, dst, modeFrozen); err != nil {
		return err
	}
	q.log().InfoContext(ctx, "shortcut layer built", "layer", dst, "run_top", runTop, "run_bottom", bottom,
		"parent", orNone(parent), "layers", len(run), "elapsed", time.Since(began).Round(time.Millisecond))
	return nil
}

// writeShortcut writes the shortcut's content into tmp, an empty file
// reserved for dst.
func (q *QemuImg) writeShortcut(ctx context.Context, runTop, parent, dst, tmp string) error {
	wb := startWriteback(tmp)
	defer wb.close()
	if parent == "" {
		args := append([]string{"convert", "-f", "qcow2", "-O", "qcow2"}, convertTuning()...)
		return q.runLines(ctx, func(string) { wb.kick() }, append(args, runTop, tmp)...)
	}
	size, err := deltaSize(runTop)
	if err != nil {
		return err
	}
	img, err := encodeDelta(size, backingName(runTop, dst))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := writeDelta(f, img); err != nil {
		return err
	}
	_, err = q.run(ctx, "rebase", "-f", "qcow2", "-F", "qcow2", "-b", backingName(parent, dst), tmp)
	return err
}

// runAbove returns the layers of chain (top first) above parent, top
// first, or an Invalid error when parent is not below the top. parent ""
// is the whole chain.
func runAbove(chain []string, parent string) ([]string, error) {
	if parent == "" {
		return chain, nil
	}
	i := slices.Index(chain, parent)
	if i < 1 {
		return nil, errdefs.Invalid("%q is not a layer below %q (its chain: %q)", parent, chain[0], chain)
	}
	return chain[:i], nil
}

// RebaseOnto makes child, a layer whose backing file is oldParent, name
// shortcut as its backing file instead, without reading or writing any of
// its data (`qemu-img rebase -u`). It is only correct because shortcut
// reads exactly as oldParent does: shortcut must be a layer BuildShortcut
// made for a run whose top is oldParent. As a cheap guard against a mix-up
// it checks that child's backing file is oldParent (else a Conflict
// error), that shortcut's parent is in oldParent's chain, and that both
// have the same virtual size; it does not compare contents again.
//
// child may be a writable top or a frozen layer; it keeps its mode. The
// header is rewritten in place, as QEMU itself does it: a layer is never
// copied to change one name. A child in use by a running QEMU is refused
// by qemu-img's lock (switch a running VM with the hypervisor instead).
func (q *QemuImg) RebaseOnto(ctx context.Context, child, oldParent, shortcut string) (err error) {
	if err := absPaths(&child, &oldParent, &shortcut); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("rebase %q from %q onto shortcut %q: %w", child, oldParent, shortcut, err)
		}
	}()
	current, err := q.BackingFile(ctx, child)
	if err != nil {
		return err
	}
	if current != oldParent {
		return errdefs.Conflict("its backing file is %q, not %q", orNone(current), oldParent)
	}
	scParent, err := q.BackingFile(ctx, shortcut)
	if err != nil {
		return err
	}
	oldChain, err := q.Chain(ctx, oldParent)
	if err != nil {
		return err
	}
	if _, err := runAbove(oldChain, scParent); err != nil {
		return errdefs.Invalid("the shortcut's parent %q is not below %q: not a shortcut of its chain", orNone(scParent), oldParent)
	}
	oldSize, err := qcow2VirtualSize(oldParent)
	if err != nil {
		return err
	}
	scSize, err := qcow2VirtualSize(shortcut)
	if err != nil {
		return err
	}
	if oldSize != scSize {
		return errdefs.Invalid("virtual size %d of the shortcut differs from %d", scSize, oldSize)
	}
	if _, err := q.run(ctx, "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", backingName(shortcut, child), child); err != nil {
		return err
	}
	if err := syncPath(child); err != nil {
		return err
	}
	q.log().InfoContext(ctx, "layer rebased onto shortcut", "layer", child, "old_parent", oldParent, "shortcut", shortcut)
	return nil
}

// compare reports whether a and b, both qcow2, have the same guest-visible
// content.
func (q *QemuImg) compare(ctx context.Context, a, b string) (bool, error) {
	_, err := q.run(ctx, "compare", "-q", "-f", "qcow2", "-F", "qcow2", a, b)
	switch code := command.ExitCode(err); {
	case err == nil:
		return true, nil
	case code == 1:
		return false, nil
	default:
		return false, fmt.Errorf("compare %q with %q: %w", a, filepath.Base(b), err)
	}
}

// orNone names an absent parent in messages.
func orNone(path string) string {
	if path == "" {
		return "(none)"
	}
	return path
}
