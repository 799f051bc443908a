package lab

import (
	"fmt"

	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// layerIndex is a snapshot of every layer, for walking chains without a
// query per layer.
type layerIndex map[int64]store.Layer

func loadLayers(tx store.Tx) (layerIndex, error) {
	idx, err := deploy.LayerIndex(tx)
	return layerIndex(idx), err
}

// chain returns the layers from top down to the base.
func (idx layerIndex) chain(top int64) ([]store.Layer, error) {
	var out []store.Layer
	for id := top; id != 0; {
		l, ok := idx[id]
		if !ok {
			return nil, fmt.Errorf("layer %d of chain from %d is missing from the store", id, top)
		}
		out = append(out, l)
		if len(out) > 10000 {
			return nil, fmt.Errorf("chain from layer %d loops", top)
		}
		id = l.ParentID
	}
	return out, nil
}

// depth returns the depth of the chain from top in clone history, what
// the chain limit counts: a shortcut layer counts as the run of layers it
// stands for (shortcut.go), so shortcuts shorten reads, not history.
func (idx layerIndex) depth(top int64) (int, error) {
	return idx.logicalDepth(top)
}

// releaseLayers deletes, inside tx, every layer of ids that nothing refers
// to any more (no child, not a disk's top, not a template's base, not in a
// snapshot), and then
// its parent by the same rule, cascading towards the base. It returns the
// paths of the deleted layers; the caller removes the files once the
// transaction has committed.
func releaseLayers(tx store.Tx, ids []int64) ([]string, error) {
	var removed []string
	queue := append([]int64(nil), ids...)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		l, err := tx.Layers().Get(id)
		if err != nil {
			continue // already released through another path
		}
		used, err := layerInUse(tx, l)
		if err != nil {
			return nil, err
		}
		if used {
			continue
		}
		if err := tx.Layers().Delete(id); err != nil {
			return nil, fmt.Errorf("release layer %s: %w", l.Path, err)
		}
		removed = append(removed, l.Path)
		if l.ParentID != 0 {
			queue = append(queue, l.ParentID)
		}
	}
	return removed, nil
}

// layerInUse reports whether anything still refers to l.
func layerInUse(tx store.Tx, l *store.Layer) (bool, error) {
	if l.TemplateID != 0 {
		return true, nil
	}
	kids, err := tx.Layers().Children(l.ID)
	if err != nil {
		return false, err
	}
	if len(kids) > 0 {
		return true, nil
	}
	disks, err := tx.Layers().DisksWithTop(l.ID)
	if err != nil {
		return false, err
	}
	if len(disks) > 0 {
		return true, nil
	}
	snaps, err := tx.Snapshots().WithLayer(l.ID)
	if err != nil {
		return false, err
	}
	return len(snaps) > 0, nil
}

// releaseAllocations deletes the internal allocations of ids that no NIC
// carries any more: the address goes back to the pool when the last member
// of its family is gone.
func (s *core) releaseAllocations(tx store.Tx, ids []int64) error {
	for _, id := range ids {
		if id == 0 {
			continue
		}
		nics, err := tx.Allocations().NICs(id)
		if err != nil {
			return err
		}
		if len(nics) > 0 {
			continue
		}
		a, err := tx.Allocations().Get(id)
		if err != nil {
			continue
		}
		if a.Kind != store.AllocInternal {
			continue
		}
		if err := tx.Allocations().Delete(id); err != nil {
			return fmt.Errorf("release address %s: %w", a.IP, err)
		}
		s.alloc.Released(a.NetworkID, a.IP)
	}
	return nil
}
