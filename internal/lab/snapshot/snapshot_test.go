package snapshot

import (
	"slices"
	"testing"

	"stagehand/internal/store"
)

// A tree: base 1 (pinned) ← 2 (snapshot a) ← 3 (snapshot b) ← 4 (top),
// and 2 ← 5 (a clone's top, pinned). Dropping b frees 3 only after the
// top moved away; dropping a frees nothing while b or the clone builds
// on 2.
func TestFreed(t *testing.T) {
	layers := map[int64]Layer{
		1: {ID: 1, Pinned: true},
		2: {ID: 2, ParentID: 1},
		3: {ID: 3, ParentID: 2},
		4: {ID: 4, ParentID: 3, Pinned: true},
		5: {ID: 5, ParentID: 2, Pinned: true},
	}
	refs := map[int64]int{2: 1, 3: 1}
	cases := []struct {
		name   string
		mutate func(map[int64]Layer)
		drop   []int64
		want   []int64
	}{
		{"b while the top builds on it", nil, []int64{3}, nil},
		{"a while b and the clone build on it", nil, []int64{2}, nil},
		{"b after the top moved to a", func(m map[int64]Layer) { m[4] = Layer{ID: 4, ParentID: 2, Pinned: true} }, []int64{3}, []int64{3}},
		{"b with the top gone and the clone gone: a stays (referenced)", func(m map[int64]Layer) { delete(m, 4); delete(m, 5) }, []int64{3}, []int64{3}},
	}
	for _, c := range cases {
		m := map[int64]Layer{}
		for k, v := range layers {
			m[k] = v
		}
		if c.mutate != nil {
			c.mutate(m)
		}
		if got := Freed(m, refs, c.drop); !slices.Equal(got, c.want) {
			t.Errorf("%s: Freed = %v, want %v", c.name, got, c.want)
		}
	}
	// Both references dropped with nothing else on them: cascade to the
	// pinned base and stop there.
	m := map[int64]Layer{1: layers[1], 2: layers[2], 3: layers[3]}
	if got := Freed(m, refs, []int64{3, 2}); !slices.Equal(got, []int64{3, 2}) {
		t.Errorf("both dropped: Freed = %v, want [3 2]", got)
	}
}

func TestOrderedAndCurrent(t *testing.T) {
	snaps := []store.Snapshot{
		{ID: 1, Name: "a", Disks: []store.SnapshotDisk{{LayerID: 10}}},
		{ID: 2, ParentID: 1, Name: "b", Disks: []store.SnapshotDisk{{LayerID: 11}}},
		{ID: 3, ParentID: 1, Name: "c", Disks: []store.SnapshotDisk{{LayerID: 12}}},
		{ID: 4, ParentID: 2, Name: "d", Disks: []store.SnapshotDisk{{LayerID: 13}}},
	}
	got, depths := Ordered(snaps)
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "d", "c"}) || !slices.Equal(depths, []int{0, 1, 2, 1}) {
		t.Errorf("Ordered = %v %v, want [a b d c] [0 1 2 1]", names, depths)
	}
	if c := Current(snaps, []int64{20, 12, 10, 1}); c != 3 {
		t.Errorf("Current = %d, want 3 (c names the nearest ancestor)", c)
	}
	if c := Current(snaps, []int64{20, 1}); c != 0 {
		t.Errorf("Current of a chain no snapshot names = %d, want 0", c)
	}
}

// PlanDisk: each point is stored on the nearest point below it in its
// logical chain; the points with none below on the part of the chain
// they share.
func TestPlanDisk(t *testing.T) {
	// 1 template base ← 2 (a clone's freeze) ← 3 (s1) ← 4 ← 5 (s2),
	// 3 ← 6 (s3) ← 7 (top). 4 is an unnamed layer (a deleted
	// snapshot's): s2's delta folds it in.
	layers := map[int64]Layer{
		1: {ID: 1}, 2: {ID: 2, ParentID: 1}, 3: {ID: 3, ParentID: 2}, 4: {ID: 4, ParentID: 3},
		5: {ID: 5, ParentID: 4}, 6: {ID: 6, ParentID: 3}, 7: {ID: 7, ParentID: 6},
	}
	cases := []struct {
		name   string
		mutate func(map[int64]Layer)
		points []int64
		below  map[int64]int64
		base   int64
	}{
		{"a tree on one root", nil, []int64{3, 5, 6, 7}, map[int64]int64{3: 0, 5: 3, 6: 3, 7: 6}, 2},
		{"the root deleted: two roots share 3", nil, []int64{5, 6, 7}, map[int64]int64{5: 0, 6: 0, 7: 6}, 3},
		{"the oldest point is a base", func(m map[int64]Layer) { m[3] = Layer{ID: 3} }, []int64{3, 6, 7}, map[int64]int64{3: 0, 6: 3, 7: 6}, 0},
		{"the top consolidated: nothing shared", func(m map[int64]Layer) { m[7] = Layer{ID: 7} }, []int64{3, 7}, map[int64]int64{3: 0, 7: 0}, 0},
		{"a shortcut 8 for the run 6..3 under the top", func(m map[int64]Layer) {
			m[8] = Layer{ID: 8, ParentID: 2, ShortcutOf: 6}
			m[7] = Layer{ID: 7, ParentID: 8}
		}, []int64{3, 6, 7}, map[int64]int64{3: 0, 6: 3, 7: 6}, 2},
	}
	for _, c := range cases {
		m := map[int64]Layer{}
		for k, v := range layers {
			m[k] = v
		}
		if c.mutate != nil {
			c.mutate(m)
		}
		plan, err := PlanDisk(m, c.points)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if plan.Base != c.base || len(plan.Below) != len(c.below) {
			t.Errorf("%s: plan %+v, want below %v base %d", c.name, plan, c.below, c.base)
			continue
		}
		for p, b := range c.below {
			if plan.Below[p] != b {
				t.Errorf("%s: point %d below %d, want %d", c.name, p, plan.Below[p], b)
			}
		}
	}
	if _, err := PlanDisk(map[int64]Layer{1: {ID: 1, ParentID: 9}}, []int64{1}); err == nil {
		t.Error("a chain with a missing layer: no error")
	}
	if _, err := PlanDisk(map[int64]Layer{1: {ID: 1, ParentID: 2}, 2: {ID: 2, ParentID: 1}}, []int64{1}); err == nil {
		t.Error("a chain that loops: no error")
	}
}
