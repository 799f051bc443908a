package labtest

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
)

// TestHostKeepsAHostsRules drives the fakes directly: they refuse what a
// real host refuses, keep what outlives a daemon across Restart, and write
// one stable line per call.
func TestHostKeepsAHostsRules(t *testing.T) {
	ctx := context.Background()
	h := NewHost()
	dir := t.TempDir()
	spec := fence.FenceSpec{ID: "0a1b2c3d-c7", Policy: fence.PolicyBlock, Networks: []fence.FenceNetwork{{Name: "lan"}}}

	if err := h.Segments.Reserve("lan", "52:54:00:00:00:01", netip.MustParseAddr("10.0.0.5")); err == nil {
		t.Error("reserve without a DHCP server succeeded")
	}
	if err := h.Segments.EnsureSegment(ctx, "lan", netip.MustParsePrefix("10.0.0.1/24"), nil, fence.AddrRange{}); err != nil {
		t.Fatal(err)
	}
	if err := h.Segments.Reserve("lan", "52:54:00:00:00:01", netip.MustParseAddr("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	if err := h.Segments.CreateTap(ctx, "sh-tap-0123abcd", "lan"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Fences.Setup(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Fences.Setup(ctx, spec); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second fence setup: %v, want a conflict", err)
	}
	vm, err := h.Hypervisor.Start(ctx, hypervisor.Spec{ID: "sh-0a1b2c3d-vm3", RunDir: dir, Netns: fence.NamespaceName(spec.ID)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Hypervisor.Start(ctx, hypervisor.Spec{ID: "sh-0a1b2c3d-vm3", RunDir: dir}); err == nil {
		t.Error("a second process for one VM started")
	}
	if _, err := h.Hypervisor.Start(ctx, hypervisor.Spec{ID: "sh-0a1b2c3d-vm4", RunDir: dir, IncomingStateFile: filepath.Join(dir, "none.state")}); err == nil {
		t.Error("a VM resumed from a missing state file")
	}

	h.Restart()
	want := []string{"running vm3", "tap tap1 on lan", "fence c7"}
	if diff := cmp.Diff(want, h.Leftovers()); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
	if err := h.Fences.CreateTap(ctx, spec.ID, "sh-tap-4567cdef", "lan"); err == nil {
		t.Error("a tap in a fence nobody adopted")
	}
	if _, err := h.Fences.Adopt(ctx, spec); err != nil {
		t.Fatal(err)
	}
	adopted, err := h.Hypervisor.Adopt(ctx, dir, "sh-0a1b2c3d-vm3")
	if err != nil {
		t.Fatal(err)
	}
	if adopted.PID() != vm.PID() {
		t.Errorf("adopted pid %d, started %d", adopted.PID(), vm.PID())
	}
	state := filepath.Join(dir, "vm-3.state")
	if err := adopted.SaveState(ctx, state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("no state file after a save: %v", err)
	}
	if err := adopted.Wait(ctx); err != nil {
		t.Errorf("wait after the save: %v", err)
	}
	// The dead daemon's handle sees nothing: its watcher is gone.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := vm.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait on a dead daemon's handle: %v, want it to see nothing", err)
	}
	if err := h.Fences.Teardown(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := h.Segments.DeleteTap(ctx, "sh-tap-0123abcd"); err != nil {
		t.Fatal(err)
	}
	if left := h.Leftovers(); len(left) > 0 {
		t.Errorf("left: %q", left)
	}
	wantCalls := []string{
		"seg reserve lan mac1 10.0.0.5",
		"seg ensure lan 10.0.0.1/24 dhcp=-",
		"seg reserve lan mac1 10.0.0.5",
		"seg create-tap tap1 lan",
		"fence setup c7 policy=block lan[]",
		"fence setup c7 policy=block lan[]",
		// Consecutive starts are sorted (Take).
		"hv start vm3 cpus=0 mem=0 accel= disks=0 nics=[] netns=- resume=-",
		"hv start vm3 cpus=0 mem=0 accel= disks=0 nics=[] netns=c7 resume=-",
		"hv start vm4 cpus=0 mem=0 accel= disks=0 nics=[] netns=- resume=none.state",
		"fence create-tap c7 tap2 lan",
		"fence adopt c7 policy=block lan[]",
		"hv adopt vm3",
		"vm save-state vm3",
		"fence teardown c7",
		"seg delete-tap tap1",
	}
	if diff := cmp.Diff(wantCalls, h.Calls.Take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}
