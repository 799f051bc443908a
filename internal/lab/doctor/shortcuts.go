package doctor

import (
	"fmt"

	"stagehand/internal/store"
)

// ProblemShortcutMismatch is a shortcut layer (issue 15: a frozen layer
// standing for a run of frozen layers) whose record does not match the
// run it names: not frozen, no run, a run whose bottom does not sit on
// the shortcut's own parent, another depth or another virtual size.
const ProblemShortcutMismatch = "shortcut-mismatch"

// checkShortcuts compares each shortcut's record with the run it stands
// for, while the run's top is recorded (once released, only the ids are
// history). Its file's backing name is checked with every layer's
// (checkLayers: the shortcut's parent is the run's parent), and a run top
// nothing refers to any more is an unreferenced layer there: a run is
// either released or still referenced.
func (d *run) checkShortcuts() error {
	idx := make(map[int64]store.Layer, len(d.layers))
	for _, l := range d.layers {
		idx[l.ID] = l
	}
	for _, sc := range d.layers {
		if sc.ShortcutOf == 0 || d.inFlight[sc.Path] || d.elsewhere[sc.ID] {
			continue
		}
		mismatch := func(format string, args ...any) {
			d.add(Problem{Kind: ProblemShortcutMismatch, Subject: d.dr.abs(sc.Path), Detail: fmt.Sprintf(format, args...)})
		}
		if !sc.Frozen {
			mismatch("a shortcut layer must be frozen")
			continue
		}
		if sc.ShortcutBottom == 0 || sc.ShortcutLayers < 1 {
			mismatch("stands for layers %d..%d, %d deep: no run", sc.ShortcutBottom, sc.ShortcutOf, sc.ShortcutLayers)
			continue
		}
		top, ok := idx[sc.ShortcutOf]
		if !ok {
			continue // the run's top is released
		}
		if top.VirtualSize != sc.VirtualSize {
			mismatch("virtual size %d, its run's top %s has %d", sc.VirtualSize, top.Path, top.VirtualSize)
		}
		depth, onParent, found := 0, false, false
		for id, n := top.ID, 0; id != 0 && n < 10000; n++ {
			l, ok := idx[id]
			if !ok {
				break
			}
			depth += layerWeight(l)
			if id == sc.ShortcutBottom {
				found, onParent = true, l.ParentID == sc.ParentID
				break
			}
			id = l.ParentID
		}
		switch {
		case !found:
			mismatch("layer %d, the bottom of its run, is not in the chain of the run's top %s", sc.ShortcutBottom, top.Path)
		case !onParent:
			mismatch("its run's bottom (layer %d) is not on the shortcut's parent (layer %d)", sc.ShortcutBottom, sc.ParentID)
		case depth != sc.ShortcutLayers:
			mismatch("stands for %d layers, its run is %d deep", sc.ShortcutLayers, depth)
		}
	}
	return nil
}

// layerWeight is how many layers of clone history l stands for.
func layerWeight(l store.Layer) int {
	if l.ShortcutOf != 0 && l.ShortcutLayers > 0 {
		return l.ShortcutLayers
	}
	return 1
}
