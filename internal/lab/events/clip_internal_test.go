package events

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// clip bounds event text on a rune boundary and marks the cut.
func TestClipEventText(t *testing.T) {
	for _, c := range []struct {
		in string
		n  int
	}{
		{"short", 10},
		{strings.Repeat("x", 5000), maxDetail},
		{strings.Repeat("ü", 3000), maxDetail},
		{strings.Repeat("✓", 3000), 100},
	} {
		got := clip(c.in, c.n)
		if len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("clip(%d bytes, %d) = %d bytes, valid UTF-8 %v", len(c.in), c.n, len(got), utf8.ValidString(got))
		}
		if len(c.in) <= c.n && got != c.in {
			t.Errorf("clip changed a short string: %q", got)
		}
		if len(c.in) > c.n && !strings.HasSuffix(got, "…") {
			t.Errorf("clip(%d bytes) does not mark the cut", len(c.in))
		}
	}
}
