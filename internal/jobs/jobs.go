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
}

// Func is the work of a job. It reports progress and must honour ctx.
type Func func(ctx context.Context, progress func(done, total int64)) error

type entry struct {
	job    Job
	cancel context.CancelFunc
	done   chan struct{}
}

// Manager keeps the jobs of one daemon.
type Manager struct {
	mu     sync.Mutex
	next   int
	jobs   map[string]*entry
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewManager returns an empty manager. Close cancels every running job.
func NewManager() *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{jobs: map[string]*entry{}, base: ctx, cancel: cancel}
}

// Start runs fn in the background and returns the new job's snapshot.
func (m *Manager) Start(kind, subject string, fn Func) Job {
	ctx, cancel := context.WithCancel(m.base)
	m.mu.Lock()
	m.next++
	e := &entry{
		job:    Job{ID: strconv.Itoa(m.next), Kind: kind, Subject: subject, State: Running, Started: time.Now().UTC()},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	m.jobs[e.job.ID] = e
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
		e.job.Ended = time.Now().UTC()
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

// List returns snapshots of every job, oldest first.
func (m *Manager) List() []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Job, 0, len(m.jobs))
	for i := 1; i <= m.next; i++ {
		if e, ok := m.jobs[strconv.Itoa(i)]; ok {
			out = append(out, e.job)
		}
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
		return errdefs.Conflict("job %s already ended (%s)", id, e.job.State)
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
	select {
	case <-e.done:
	case <-ctx.Done():
		j, _ := m.Get(id)
		return j, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
	}
	return m.Get(id)
}

// Close cancels every running job and waits for them to end.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}
