package lease

import (
	"context"
	"testing"

	"stagehand/internal/store"
)

// TestSpaceCountsSharedLayers asserts the rule of the cleanup view without
// a lab: a frozen layer two clones build on is freed by neither alone but
// by both together, and a template's layer is never freed.
func TestSpaceCountsSharedLayers(t *testing.T) {
	// 1 template base <- 2 frozen (shared) <- 3 top of a, 4 top of b.
	m := NewSpace(map[int64]store.Layer{
		1: {ID: 1, TemplateID: 7, Path: "base"},
		2: {ID: 2, ParentID: 1, Path: "frozen"},
		3: {ID: 3, ParentID: 2, Path: "a-top"},
		4: {ID: 4, ParentID: 2, Path: "b-top"},
	})
	m.AddDisk(ObjectConfig, "a", 3)
	m.AddDisk(ObjectConfig, "b", 4)
	sizes := map[string]int64{"base": 1000, "frozen": 100, "a-top": 10, "b-top": 1}
	var measured int
	size := func(_ context.Context, path string) (int64, error) { measured++; return sizes[path], nil }
	a, b := Ref{ObjectConfig, "a"}, Ref{ObjectConfig, "b"}
	for _, tc := range []struct {
		name string
		refs []Ref
		want int64
	}{
		{"a alone", []Ref{a}, 10},
		{"b alone", []Ref{b}, 1},
		{"both", []Ref{a, b}, 111},
		{"nothing", nil, 0},
	} {
		got, err := m.Frees(context.Background(), size, tc.refs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s frees %d bytes, want %d", tc.name, got, tc.want)
		}
	}
	if measured != 3 {
		t.Errorf("measured %d layers, want each freed layer once (3)", measured)
	}
}
