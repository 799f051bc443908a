package apitest

import (
	"context"
	"strconv"
	"sync"

	"stagehand/internal/lab"
)

// Disks is the lab's real DiskTool with a gate on Consolidate, the step of
// full clones, consolidations and archives that takes time: while held, a
// test sees those jobs running, and can cancel them.
type Disks struct {
	lab.DiskTool

	mu   sync.Mutex
	gate chan struct{} // nil: open
}

// Hold makes every Consolidate wait until Release (or its job's
// cancellation).
func (d *Disks) Hold() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate == nil {
		d.gate = make(chan struct{})
	}
}

// Release lets the held Consolidates go on, and the next ones run at once.
func (d *Disks) Release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
}

// Consolidate waits while the gate is held, then consolidates.
func (d *Disks) Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) error {
	d.mu.Lock()
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return d.DiskTool.Consolidate(ctx, top, dst, progress)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
