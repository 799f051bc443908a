package cli

import (
	"fmt"
	"io"
	"strings"

	"stagehand/internal/api/wire"
)

// printEgress prints a fenced deployment's allow-list and what it refused;
// nothing without one.
func printEgress(w io.Writer, c *wire.Config) {
	if c.Egress == nil {
		return
	}
	row(w, "Egress allowed:", strings.Join(c.Egress.Allow, ", ")+" (nothing else, DNS included)")
	refused := "- (the fence could not be read)"
	if c.Egress.Counted {
		refused = fmt.Sprintf("%d connection attempts since deploy", c.Egress.Refused)
	}
	row(w, "Egress refused:", refused)
}
