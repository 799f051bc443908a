// Package jobs runs long operations (full clone, consolidate, archive) in
// the background with progress in bytes, cancellation and a result. Jobs
// live in memory: a daemon restart loses the job records, while the
// operation journal in the store rolls the interrupted work back.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/metrics"
)

// Job states.
const (
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
	Canceled  = "canceled"
)

// Job is a snapshot of one background operation.
type Job struct {
	ID      string
	Kind    string // "full-clone", "consolidate", ...
	Subject string // what it works on, e.g. the new configuration's name
	State   string
	Done    int64 // bytes done
	Total   int64 // bytes in all; 0 while unknown
	Error   string
	Started time.Time
	Ended   time.Time
	// UserID is the user who started it (the starting request's
	// identity, see StartFrom); 0 for the system. Authorization lets the
	// starter read and cancel it.
	UserID int64
}

// Func is the work of a job. It reports progress and must honour ctx.
type Func func(ctx context.Context, progress func(done, total int64)) error

type entry struct {
	job    Job
	cancel context.CancelFunc
	done   chan struct{}
}

// Retention bounds the finished jobs a manager remembers: a job that has
// ended stays readable (state, error) for MaxAge, and only the newest
// MaxFinished of them are kept, so a daemon that runs for months does not
// list every job it ever ran. Running jobs are always kept.
type Retention struct {
	MaxFinished int
	MaxAge      time.Duration
}

// DefaultRetention is what NewManager keeps.
var DefaultRetention = Retention{MaxFinished: 256, MaxAge: 24 * time.Hour}

// Manager keeps the jobs of one daemon.
type Manager struct {
	mu        sync.Mutex
	next      int
	jobs      map[string]*entry
	order     []string // ids in start order
	retention Retention
	now       func() time.Time
	base      context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// NewManager returns an empty manager with DefaultRetention. Close cancels
// every running job.
func NewManager() *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{jobs: map[string]*entry{}, retention: DefaultRetention, now: time.Now, base: ctx, cancel: cancel}
}

// SetRetention changes how many finished jobs are kept, and for how long.
func (m *Manager) SetRetention(r Retention) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retention = r
	m.pruneLocked()
}

// pruneLocked forgets the finished jobs beyond the retention, oldest
// first. m.mu is held.
func (m *Manager) pruneLocked() {
	finished := 0
	for _, id := range m.order {
		if m.jobs[id].job.State != Running {
			finished++
		}
	}
	cutoff := m.now().Add(-m.retention.MaxAge)
	kept := m.order[:0]
	for _, id := range m.order {
		e := m.jobs[id]
		if e.job.State != Running && (finished > m.retention.MaxFinished || e.job.Ended.Before(cutoff)) {
			delete(m.jobs, id)
			finished--
			continue
		}
		kept = append(kept, id)
	}
	clear(m.order[len(kept):])
	m.order = kept
}

// Start runs fn in the background and returns the new job's snapshot.
func (m *Manager) Start(kind, subject string, fn Func) Job {
	return m.start(kind, subject, 0, fn)
}

func (m *Manager) start(kind, subject string, userID int64, fn Func) Job {
	ctx, cancel := context.WithCancel(m.base)
	m.mu.Lock()
	m.next++
	e := &entry{
		job:    Job{ID: strconv.Itoa(m.next), Kind: kind, Subject: subject, State: Running, Started: m.now().UTC(), UserID: userID},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	m.jobs[e.job.ID] = e
	m.order = append(m.order, e.job.ID)
	m.pruneLocked()
	snap := e.job
	m.mu.Unlock()

	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		err := fn(ctx, func(done, total int64) {
			m.mu.Lock()
			e.job.Done, e.job.Total = done, total
			m.mu.Unlock()
		})
		m.mu.Lock()
		e.job.Ended = m.now().UTC()
		switch {
		case err == nil:
			e.job.State = Succeeded
			e.job.Done = e.job.Total
		case errors.Is(err, context.Canceled) || errors.Is(err, errdefs.ErrCanceled):
			e.job.State = Canceled
			e.job.Error = err.Error()
		default:
			e.job.State = Failed
			e.job.Error = err.Error()
		}
		metrics.ObserveJob(e.job.Kind, e.job.State, e.job.Ended.Sub(e.job.Started).Seconds())
		m.pruneLocked()
		m.mu.Unlock()
		close(e.done)
	}()
	return snap
}

// Get returns a snapshot of job id.
func (m *Manager) Get(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[id]
	if !ok {
		return Job{}, errdefs.NotFound("job %q not found", id)
	}
	return e.job, nil
}

// List returns snapshots of every job kept (see Retention), oldest first.
func (m *Manager) List() []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked()
	out := make([]Job, 0, len(m.order))
	for _, id := range m.order {
		out = append(out, m.jobs[id].job)
	}
	return out
}

// Cancel asks job id to stop. Cancelling a finished job is a conflict.
func (m *Manager) Cancel(id string) error {
	m.mu.Lock()
	e, ok := m.jobs[id]
	m.mu.Unlock()
	if !ok {
		return errdefs.NotFound("job %q not found", id)
	}
	select {
	case <-e.done:
		m.mu.Lock()
		state := e.job.State
		m.mu.Unlock()
		return errdefs.Conflict("job %s already ended (%s)", id, state)
	default:
	}
	e.cancel()
	return nil
}

// Wait blocks until job id ends or ctx is done, and returns its snapshot.
func (m *Manager) Wait(ctx context.Context, id string) (Job, error) {
	m.mu.Lock()
	e, ok := m.jobs[id]
	m.mu.Unlock()
	if !ok {
		return Job{}, errdefs.NotFound("job %q not found", id)
	}
	// The snapshot is read from the entry, not looked up again: a
	// finished job may already have been pruned.
	snapshot := func() Job {
		m.mu.Lock()
		defer m.mu.Unlock()
		return e.job
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return snapshot(), fmt.Errorf("wait for job %s: %w", id, ctx.Err())
	}
	return snapshot(), nil
}

// Close cancels every running job and waits for them to end.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}
