package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"stagehand/internal/cluster"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// TestGuestCapacity: --guest-memory and --guest-cpus are what the host
// registers for placement; without them, the machine's whole capacity.
func TestGuestCapacity(t *testing.T) {
	ctx := context.Background()
	mem, cpus, err := cluster.LocalCapacity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name               string
		guestMem, guestCPU int
		wantMem, wantCPU   int
	}{
		{"the whole machine", 0, 0, mem, cpus},
		{"what the operator offers", 512, 1, 512, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := sqlite.Open(ctx, filepath.Join(dir, StoreFile))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg := DefaultConfig()
			cfg.DataDir, cfg.HostName, cfg.GuestMemoryMiB, cfg.GuestCPUs = dir, "h1", tc.guestMem, tc.guestCPU
			if _, _, err := joinCluster(ctx, cfg, st, dir, "unix:///x", "", slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			var h *store.Host
			if err := st.View(ctx, func(tx store.Tx) (err error) { h, err = tx.Hosts().Get("h1"); return err }); err != nil {
				t.Fatal(err)
			}
			if h.MemoryMiB != tc.wantMem || h.CPUs != tc.wantCPU {
				t.Errorf("registered %d MiB, %d CPUs; want %d MiB, %d CPUs", h.MemoryMiB, h.CPUs, tc.wantMem, tc.wantCPU)
			}
		})
	}
}
