package lease

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSharedStateCountsOnce: a state shared by three copies (hard links)
// frees nothing while one link is left, and its bytes once when every
// link goes; a path named twice is one link; an unshared file is its
// own bytes.
func TestSharedStateCountsOnce(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.state")
	if err := os.WriteFile(a, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	b, c := filepath.Join(dir, "b.state"), filepath.Join(dir, "c.state")
	for _, p := range []string{b, c} {
		if err := os.Link(a, p); err != nil {
			t.Fatal(err)
		}
	}
	solo := filepath.Join(dir, "solo.state")
	if err := os.WriteFile(solo, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	size := AllocatedBytes(a)
	if size == 0 {
		t.Fatal("a written file takes no blocks")
	}
	for _, tc := range []struct {
		paths []string
		want  int64
	}{
		{[]string{a}, 0},
		{[]string{a, b, b}, 0},
		{[]string{a, b, c}, size},
		{[]string{c, a, b, a}, size},
		{[]string{a, b, c, solo}, size + AllocatedBytes(solo)},
		{[]string{solo, filepath.Join(dir, "gone")}, AllocatedBytes(solo)},
	} {
		if got := freedStateBytes(tc.paths); got != tc.want {
			t.Errorf("freedStateBytes(%v) = %d, want %d", tc.paths, got, tc.want)
		}
	}
}
