package hypervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"stagehand/internal/errdefs"
)

// Node names of a disk's top layer, given on the command line (Spec.Args).
func topNodeName(disk int) string     { return fmt.Sprintf("drive%d-fmt", disk) }
func topFileNodeName(disk int) string { return fmt.Sprintf("drive%d-file", disk) }

// snapshotNodeNames names the format and file nodes of the top a live
// snapshot (SnapshotDisks) of generation gen puts on disk. Hexadecimal:
// QEMU takes node names of at most 31 bytes.
func snapshotNodeNames(disk int, gen int64) (node, file string) {
	prefix := fmt.Sprintf("drive%d-g%x", disk, gen)
	return prefix + "-fmt", prefix + "-file"
}

// topFileNode returns the name of the file node under node, the top of
// disk, when the name is one this package gave (the command line's or a
// live snapshot's); ok is false for a name QEMU generated.
//
// The name is derived, not looked up in QEMU's graph: query-block and
// query-named-block-nodes do not say which node is whose file child (only
// the unstable x-debug-query-block-graph does), and matching nodes by
// file name is ambiguous once a file is opened twice (as SwitchBacking
// itself does for frozen layers). Names given at creation are exact.
func topFileNode(disk int, node string) (file string, ok bool) {
	if node == topNodeName(disk) {
		return topFileNodeName(disk), true
	}
	gen, ok := strings.CutPrefix(node, fmt.Sprintf("drive%d-g", disk))
	if !ok {
		return "", false
	}
	gen, ok = strings.CutSuffix(gen, "-fmt")
	if !ok || gen == "" || strings.Trim(gen, "0123456789abcdef") != "" {
		return "", false
	}
	return strings.TrimSuffix(node, "-fmt") + "-file", true
}

// SwitchBacking makes the running VM's disk number disk (its index in
// Spec.Disks) read through shortcut instead of the run of layers below
// child: child is a layer of the disk's chain (its top, or a frozen layer
// under it) whose backing file is the top of the run, and shortcut a
// frozen layer with the same content as that run top, whose own backing
// is the run's parent (disk.BuildShortcut makes it). The guest sees no
// change; the run's files are closed by this QEMU once it returns.
//
// How, in QEMU 7.2, and why:
//   - change-backing-file only rewrites the name in an image header: the
//     node graph, and so every read, still goes through the run.
//   - block-stream with a base copies the data of the layers between the
//     base and the top into the writable top: each VM's top would grow by
//     the run's data, which is what a shared shortcut layer avoids.
//   - blockdev-reopen (stable since 6.1) replaces a node's backing child
//     in the live graph with a node added by blockdev-add. That is the
//     switch; it needs node names QEMU did not generate, hence the top's
//     names on the command line, and those SnapshotDisks gives the new
//     top of a live snapshot (topFileNode).
//
// When child is the top, its header is rewritten too (change-backing-file,
// before the reopen, and put back if the reopen fails), so the file on
// disk names the shortcut and the next start reads the same chain. The
// top is the VM's own, written only by this QEMU.
//
// When child is a frozen layer below the top, its header cannot change
// now: the file is shared with other clones, and QEMU's backing nodes
// never share the write permission, so neither QEMU nor qemu-img may
// write it while any VM reads it. The layers from child up to (not
// including) the top are then opened again as new read-only nodes with
// their backing given explicitly (child's is the shortcut), and the top
// is reopened onto them. The headers on disk keep naming the run, so the
// run must be kept until child is rebased (disk.RebaseOnto) at a time no
// VM has it open: the new read path is live, the new names on disk wait
// for the next deploy.
//
// A VM started before its top's nodes were named cannot be switched (an
// Unavailable error): switch it at its next deploy.
func (v *VM) SwitchBacking(ctx context.Context, disk int, child, shortcut string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("vm %q: switch disk %d from the backing of %q to shortcut %q: %w", v.id, disk, child, shortcut, err)
		}
	}()
	if !filepath.IsAbs(child) || !filepath.IsAbs(shortcut) {
		return errdefs.Invalid("layer paths must be absolute")
	}
	dev, err := queryDisk(ctx, v, disk)
	if err != nil {
		return err
	}
	chain := dev.Inserted.Image.chain()
	idx := slices.Index(chain, child)
	topNode := dev.Inserted.NodeName
	topFile, named := topFileNode(disk, topNode)
	switch {
	case !named:
		return errdefs.Unavailable("its top node is %q, a name QEMU generated: QEMU was started without the node names a live switch needs; switch at the next deploy",
			topNode)
	case idx < 0:
		return errdefs.NotFound("%q is not in the disk's chain %q", child, chain)
	case idx+1 >= len(chain):
		return errdefs.Invalid("%q has no backing file", child)
	}
	// Undo, in reverse order, what was done so far.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	nonce := make([]byte, 3)
	rand.Read(nonce)
	prefix := fmt.Sprintf("sc%d-%s", disk, hex.EncodeToString(nonce))
	add := func(node, path string, backing any) error {
		opts := map[string]any{
			"driver": "qcow2", "node-name": node, "read-only": true,
			"file": map[string]any{"driver": "file", "filename": path, "read-only": true},
		}
		if backing != nil {
			opts["backing"] = backing
		}
		if _, err := v.execute(ctx, "blockdev-add", opts); err != nil {
			return fmt.Errorf("open %q: %w", path, err)
		}
		undo = append(undo, func() { deleteNode(v, node) })
		return nil
	}
	// The shortcut's own chain is opened from its header, as the next
	// start will open it.
	below := prefix + "-s"
	if err := add(below, shortcut, nil); err != nil {
		return err
	}
	for j := idx; j >= 1; j-- {
		node := fmt.Sprintf("%s-%d", prefix, j)
		if err := add(node, chain[j], below); err != nil {
			return err
		}
		below = node
	}
	if idx == 0 {
		top, old := chain[0], dev.Inserted.Image.BackingFilename
		if err := setBackingName(ctx, v, disk, topNode, backingName(shortcut, top)); err != nil {
			return err
		}
		undo = append(undo, func() {
			if err := setBackingName(context.WithoutCancel(ctx), v, disk, topNode, old); err != nil {
				v.log.Error("cannot restore the top's backing file name", "disk", disk, "layer", top, "backing", old, "err", err)
			}
		})
	}
	_, err = v.execute(ctx, "blockdev-reopen", map[string]any{"options": []any{map[string]any{
		"driver": "qcow2", "node-name": topNode, "file": topFile,
		"read-only": dev.Inserted.ReadOnly, "discard": "unmap", "backing": below,
	}}})
	if err != nil {
		return fmt.Errorf("reopen the top on the new chain: %w", err)
	}
	undo = nil // the guest reads through the shortcut now: nothing to take back
	releaseSnapshotNodes(ctx, v, disk)

	// What the guest now reads through: child's layers, the shortcut, and
	// the shortcut's own chain.
	after, err := queryDisk(ctx, v, disk)
	if err != nil {
		return err
	}
	got := after.Inserted.Image.chain()
	if idx+1 >= len(got) || !slices.Equal(got[:idx+1], chain[:idx+1]) || got[idx+1] != shortcut || len(got) >= len(chain) {
		return fmt.Errorf("after the switch the disk reads through %q, want %q then %q and fewer than %d layers", got, chain[:idx+1], shortcut, len(chain))
	}
	v.log.Info("disk switched to a shortcut layer", "disk", disk, "layer", child, "shortcut", shortcut,
		"depth_before", len(chain), "depth_after", len(got), "header_rewritten", idx == 0)
	return nil
}

// qmpImage is the part of an ImageInfo (query-block) the switch reads.
type qmpImage struct {
	Filename        string    `json:"filename"`
	BackingFilename string    `json:"backing-filename"`
	Backing         *qmpImage `json:"backing-image"`
}

// chain lists the files of the image and its backing images, top first.
func (im *qmpImage) chain() []string {
	var names []string
	for ; im != nil; im = im.Backing {
		names = append(names, layerFile(im.Filename))
	}
	return names
}

// layerFile returns the file of a node as query-block names it. QEMU names
// a node whose backing is not the one its header would give (after a
// switch, and whenever the header's name is relative) with a "json:"
// description of its options; the file is in "file"."filename".
func layerFile(filename string) string {
	rest, ok := strings.CutPrefix(filename, "json:")
	if !ok {
		return filename
	}
	var opts struct {
		File struct {
			Filename string `json:"filename"`
		} `json:"file"`
	}
	if json.Unmarshal([]byte(rest), &opts) != nil || opts.File.Filename == "" {
		return filename
	}
	return opts.File.Filename
}

type qmpBlock struct {
	Device   string `json:"device"`
	Inserted *struct {
		NodeName string   `json:"node-name"`
		ReadOnly bool     `json:"ro"`
		Image    qmpImage `json:"image"`
	} `json:"inserted"`
}

// queryDisk returns query-block's entry for disk number disk.
func queryDisk(ctx context.Context, v *VM, disk int) (qmpBlock, error) {
	ret, err := v.execute(ctx, "query-block", nil)
	if err != nil {
		return qmpBlock{}, err
	}
	var blocks []qmpBlock
	if err := json.Unmarshal(ret, &blocks); err != nil {
		return qmpBlock{}, fmt.Errorf("query-block: %w", err)
	}
	device := fmt.Sprintf("drive%d", disk)
	for _, b := range blocks {
		if b.Device == device && b.Inserted != nil {
			return b, nil
		}
	}
	return qmpBlock{}, errdefs.NotFound("no disk %d (%s) in the VM", disk, device)
}

// setBackingName rewrites the backing file name in the header of disk's
// top layer, node; the node graph does not change.
func setBackingName(ctx context.Context, v *VM, disk int, node, name string) error {
	_, err := v.execute(ctx, "change-backing-file", map[string]any{
		"device": fmt.Sprintf("drive%d", disk), "image-node-name": node, "backing-file": name,
	})
	if err != nil {
		return fmt.Errorf("rewrite the top's backing file name: %w", err)
	}
	return nil
}

// releaseSnapshotNodes closes the nodes of disk that a switch took out of
// the disk's chain and that the monitor still holds because they were
// opened by blockdev-add: live snapshots' tops (SnapshotDisks) and an
// earlier switch's layers (sc<disk>-…), with the layers only they read.
// Without this QEMU would keep the replaced run open until it exits. blockdev-del refuses a node still in use, which is
// how the ones still in the chain stay; a node under another orphan is
// freed with it, or in a later pass. Failures are only logged: the guest
// already reads through the shortcut.
func releaseSnapshotNodes(ctx context.Context, v *VM, disk int) {
	ret, err := v.execute(ctx, "query-named-block-nodes", map[string]any{"flat": true})
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err == nil {
		err = json.Unmarshal(ret, &nodes)
	}
	if err != nil {
		v.log.Warn("cannot list nodes to close after a switch", "disk", disk, "err", err)
		return
	}
	var names []string
	for _, n := range nodes {
		_, snap := topFileNode(disk, n.NodeName)
		if snap && n.NodeName != topNodeName(disk) || strings.HasPrefix(n.NodeName, fmt.Sprintf("sc%d-", disk)) {
			names = append(names, n.NodeName)
		}
	}
	for progress := true; progress; {
		progress = false
		for i := 0; i < len(names); i++ {
			if _, err := v.execute(ctx, "blockdev-del", map[string]any{"node-name": names[i]}); err != nil {
				var qe *QMPError
				if !errors.As(err, &qe) {
					v.log.Warn("cannot close a replaced snapshot node", "disk", disk, "node", names[i], "err", err)
					return
				}
				continue // in use: still in the chain, or under an orphan
			}
			v.log.Debug("closed a replaced snapshot node", "disk", disk, "node", names[i])
			names = slices.Delete(names, i, i+1)
			i--
			progress = true
		}
	}
}

// deleteNode removes a node added by blockdev-add, for undo; a failure is
// only logged (the node then stays open until QEMU exits).
func deleteNode(v *VM, node string) {
	_, err := v.execute(context.Background(), "blockdev-del", map[string]any{"node-name": node})
	var qe *QMPError
	if err != nil && !errors.As(err, &qe) {
		v.log.Error("cannot close node after a failed switch", "node", node, "err", err)
	} else if err != nil {
		v.log.Warn("node left open after a failed switch", "node", node, "err", err)
	}
}

// backingName is how layer records backing: the base name when both share
// a directory, else the absolute path (the rule of disk.CreateDelta).
func backingName(backing, layer string) string {
	if filepath.Dir(backing) != filepath.Dir(layer) {
		return backing
	}
	name := filepath.Base(backing)
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = "./" + name // "a:b.qcow2" would be read as protocol "a"
	}
	return name
}
