// Package snapshot is the bookkeeping of configuration snapshot trees:
// which snapshot the configuration continues from, the tree's drawing
// order, and what deleting a snapshot would free. It is pure: the lab
// hands it the records and acts on its answers.
package snapshot

import (
	"fmt"
	"slices"

	"stagehand/internal/store"
)

// Layer is what the bookkeeping needs of one layer record.
type Layer struct {
	ID, ParentID int64
	// Pinned: something other than snapshots and child layers keeps it
	// (a template's base, a disk's top).
	Pinned bool
	// ShortcutOf is, for a shortcut layer, the top of the run it reads
	// as (0 otherwise): see LogicalChain.
	ShortcutOf int64
}

// Freed returns the layers that dropping the snapshot references in drop
// (layer ids, one per reference) would free: a layer left with no child,
// no pin and no other snapshot reference, then its parent by the same
// rule, towards the base. refs counts every snapshot reference of each
// layer, drop's included. This is the rule releaseLayers applies in the
// store, so a snapshot's exclusive size is exactly what its delete frees.
func Freed(layers map[int64]Layer, refs map[int64]int, drop []int64) []int64 {
	children := map[int64]int{}
	for _, l := range layers {
		if l.ParentID != 0 {
			children[l.ParentID]++
		}
	}
	left := map[int64]int{}
	for id, n := range refs {
		left[id] = n
	}
	for _, id := range drop {
		left[id]--
	}
	var freed []int64
	gone := map[int64]bool{}
	queue := slices.Clone(drop)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		l, ok := layers[id]
		if !ok || gone[id] || l.Pinned || children[id] > 0 || left[id] > 0 {
			continue
		}
		gone[id] = true
		freed = append(freed, id)
		if l.ParentID != 0 {
			children[l.ParentID]--
			queue = append(queue, l.ParentID)
		}
	}
	return freed
}

// Refs counts the snapshot references of each layer.
func Refs(snaps []store.Snapshot) map[int64]int {
	refs := map[int64]int{}
	for _, s := range snaps {
		for _, d := range s.Disks {
			refs[d.LayerID]++
		}
	}
	return refs
}

// LayerIDs returns the layers s names.
func LayerIDs(s store.Snapshot) []int64 {
	ids := make([]int64, len(s.Disks))
	for i, d := range s.Disks {
		ids[i] = d.LayerID
	}
	return ids
}

// Current returns the snapshot the configuration continues from: the
// snapshot naming the nearest ancestor of the first disk's top (chain is
// that disk's layers, top first), or 0 when none does.
func Current(snaps []store.Snapshot, chain []int64) int64 {
	byLayer := map[int64]int64{}
	for _, s := range snaps {
		for _, d := range s.Disks {
			byLayer[d.LayerID] = s.ID
		}
	}
	for _, id := range chain {
		if s, ok := byLayer[id]; ok {
			return s
		}
	}
	return 0
}

// Ordered returns snaps depth first, children in creation order, with
// each one's depth in the tree (roots 0): the order a tree is drawn in.
func Ordered(snaps []store.Snapshot) ([]store.Snapshot, []int) {
	kids := map[int64][]store.Snapshot{}
	known := map[int64]bool{}
	for _, s := range snaps {
		known[s.ID] = true
	}
	for _, s := range snaps {
		p := s.ParentID
		if !known[p] {
			p = 0
		}
		kids[p] = append(kids[p], s)
	}
	var out []store.Snapshot
	var depths []int
	var walk func(id int64, depth int)
	walk = func(id int64, depth int) {
		for _, s := range kids[id] {
			out = append(out, s)
			depths = append(depths, depth)
			walk(s.ID, depth+1)
		}
	}
	walk(0, 0)
	return out, depths
}

// LogicalChain returns the layers from top down to its base as the
// disk's history has them: a shortcut layer (which reads exactly as the
// run it stands for) is replaced by that run while the run's top is
// still in layers, so the snapshot layers a shortcut skips are found.
func LogicalChain(layers map[int64]Layer, top int64) ([]int64, error) {
	var out []int64
	for id := top; id != 0; {
		l, ok := layers[id]
		if !ok {
			return nil, fmt.Errorf("layer %d of the chain from %d is missing", id, top)
		}
		out = append(out, id)
		if len(out) > 10000 {
			return nil, fmt.Errorf("the chain from layer %d loops", top)
		}
		id = l.ParentID
		if p, ok := layers[id]; ok && p.ShortcutOf != 0 {
			if _, ok := layers[p.ShortcutOf]; ok {
				id = p.ShortcutOf
			}
		}
	}
	return out, nil
}

// DiskPlan is how one VM disk's points (its layer in each snapshot, its
// current top) travel in an archive: each point is stored as what it
// differs by from the nearest point below it in its logical chain
// (Below), and a point with none below as a delta on Base, the part of
// the chain under every such point, consolidated. Base is 0 when those
// points share no layer (a disk consolidated since, or the oldest point
// is a base itself): they are then stored standalone.
type DiskPlan struct {
	Below map[int64]int64
	Base  int64
}

// PlanDisk plans how the points of one disk (layer ids) travel in an
// archive (see DiskPlan).
func PlanDisk(layers map[int64]Layer, points []int64) (DiskPlan, error) {
	isPoint := map[int64]bool{}
	for _, p := range points {
		isPoint[p] = true
	}
	plan := DiskPlan{Below: map[int64]int64{}}
	var roots [][]int64 // the logical chains of the points with none below
	for _, p := range points {
		chain, err := LogicalChain(layers, p)
		if err != nil {
			return DiskPlan{}, err
		}
		plan.Below[p] = 0
		for _, id := range chain[1:] {
			if isPoint[id] {
				plan.Below[p] = id
				break
			}
		}
		if plan.Below[p] == 0 {
			roots = append(roots, chain)
		}
	}
	switch {
	case len(roots) == 1 && len(roots[0]) > 1:
		plan.Base = roots[0][1]
	case len(roots) > 1:
		// The topmost layer every root's chain ends with.
		for k := 1; ; k++ {
			var common int64
			for i, c := range roots {
				if len(c) < k || (i > 0 && c[len(c)-k] != common) {
					return plan, nil
				}
				common = c[len(c)-k]
			}
			plan.Base = common
		}
	}
	return plan, nil
}
