package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"stagehand/internal/errdefs"
)

func TestJobSucceedsWithProgress(t *testing.T) {
	m := NewManager()
	defer m.Close()
	j := m.Start("full-clone", "b", func(ctx context.Context, progress func(done, total int64)) error {
		progress(5, 10)
		return nil
	})
	if j.State != Running || j.ID == "" {
		t.Fatalf("new job %+v", j)
	}
	j, err := m.Wait(context.Background(), j.ID)
	if err != nil || j.State != Succeeded || j.Done != 10 || j.Total != 10 || j.Ended.IsZero() {
		t.Fatalf("finished job %+v, %v", j, err)
	}
	if err := m.Cancel(j.ID); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("cancel of a finished job: %v, want conflict", err)
	}
}

func TestJobCancelAndFailure(t *testing.T) {
	m := NewManager()
	defer m.Close()
	started := make(chan struct{})
	j := m.Start("consolidate", "a/vm/0", func(ctx context.Context, progress func(done, total int64)) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	if err := m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	if j, _ = m.Wait(context.Background(), j.ID); j.State != Canceled {
		t.Errorf("cancelled job state %s", j.State)
	}
	f := m.Start("x", "y", func(context.Context, func(int64, int64)) error { return errors.New("disk full") })
	if f, _ = m.Wait(context.Background(), f.ID); f.State != Failed || f.Error != "disk full" {
		t.Errorf("failed job %+v", f)
	}
	if _, err := m.Get("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	if got := len(m.List()); got != 2 {
		t.Errorf("List has %d jobs, want 2", got)
	}
	// Wait honours its context.
	slow := m.Start("s", "s", func(ctx context.Context, _ func(int64, int64)) error { <-ctx.Done(); return ctx.Err() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if s, err := m.Wait(ctx, slow.ID); err == nil || s.State != Running {
		t.Errorf("wait with a short deadline: %+v %v", s, err)
	}
}
