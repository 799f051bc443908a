// Package revert undoes the completed steps of a multi-step change when a
// later step fails: r := revert.New(log); defer r.Fail(); r.Add("tap", undo);
// …; r.Success(). It is the in-memory counterpart of the lab's operation
// journal, for work whose effects are processes and links rather than files.
package revert

import (
	"errors"
	"log/slog"
	"sync"
)

// Reverter collects the undo of each step done so far. Fail runs them,
// newest first, unless Success was called. It is safe for concurrent use.
type Reverter struct {
	log   *slog.Logger
	mu    sync.Mutex
	steps []step
	done  bool
}

type step struct {
	name string
	undo func() error
}

// New returns an empty Reverter that logs each undo that fails to log (nil:
// slog's default logger).
func New(log *slog.Logger) *Reverter {
	if log == nil {
		log = slog.Default()
	}
	return &Reverter{log: log}
}

// Add records the undo of a step that has just been done. name says what
// the undo reverts, for the log.
func (r *Reverter) Add(name string, undo func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, step{name, undo})
}

// Fail runs the undos, newest first, unless Success was called, and returns
// the errors of those that failed (each also logged). Every undo runs even
// when an earlier one fails: each frees what it can.
func (r *Reverter) Fail() error {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return nil
	}
	r.done = true
	steps := r.steps
	r.steps = nil
	r.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].undo(); err != nil {
			r.log.Error("undo failed", "step", steps[i].name, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Success keeps what was done: a later Fail does nothing.
func (r *Reverter) Success() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	r.steps = nil
}

// Clone returns a Reverter holding the same undos, for a caller that builds
// on the result of a successful change and must be able to undo it as one
// of its own steps: use r.Clone().Fail as that step's undo, then call
// r.Success.
func (r *Reverter) Clone() *Reverter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &Reverter{log: r.log, steps: append([]step(nil), r.steps...)}
}
