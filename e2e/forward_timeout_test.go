package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stagehand/internal/hostlink"
)

// TestForwardToPartitionedHost (issue 13): a configuration's home host h1
// is cut from the underlay, but not yet silent long enough to be offline.
// Through h2, `config show` (answered from the store alone) is served by
// h2 itself once the dial to h1 fails, and `vm log` (which needs h1) is
// answered 503 naming h1 as unreachable: each within the forwarding's
// connection bounds and a margin (the first request finds h2's pooled
// connection to h1: its TCP user timeout ends it, then a new dial times
// out), not after TCP's wait for an unreachable host.
func TestForwardToPartitionedHost(t *testing.T) {
	guest := guestImages(t)
	c := newCluster(t, 2)
	logOnFailure(t, c)
	h1, h2 := c.host(1), c.host(2)
	h1.ok("template", "import", "bg", "--disk", filepath.Join(guest, "disk.qcow2"), "--memory", "256")
	h1.ok("config", "create", "web", "--vm", "a=bg")
	// A first forward leaves a connection to h1 in h2's pool.
	if got := h2.config("web"); got.Name != "web" {
		t.Fatalf("config show through h2: %+v", got)
	}

	c.cut(1)
	t.Cleanup(func() { c.heal(1) })
	// Bound: a pooled connection's TCP user timeout, then a new dial's
	// timeout, plus the CLI's own start and a few store reads.
	bound := hostlink.ForwardUserTimeout + hostlink.ForwardDialTimeout + 3*time.Second
	for i := range 2 { // the second finds no pooled connection
		start := time.Now()
		r := h2.run("config", "show", "web")
		took := time.Since(start)
		t.Logf("config show through h2, h1 cut (%d): exit %d in %s", i, r.code, took.Round(time.Millisecond))
		if r.code != 0 || !strings.Contains(r.stdout, "web") {
			t.Errorf("config show through h2 with h1 cut: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if took > bound {
			t.Errorf("config show through h2 with h1 cut took %s, more than %s", took, bound)
		}
	}
	start := time.Now()
	r := h2.run("vm", "log", "web", "a")
	took := time.Since(start)
	t.Logf("vm log through h2, h1 cut: exit %d in %s: %s", r.code, took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	if r.code != 5 || !strings.Contains(r.stderr, `host "h1"`) || !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("vm log through h2 with h1 cut: exit %d\n%s%s\nwant exit 5 (unavailable) naming h1 as unreachable", r.code, r.stdout, r.stderr)
	}
	if took > bound {
		t.Errorf("vm log through h2 with h1 cut took %s, more than %s", took, bound)
	}
}
