package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"stagehand/internal/store"
)

// WorkPoll is how often a Worker looks for work without being told: a
// lost notification (a listener reconnecting, SQLite's none) costs at
// most this much latency, never the work.
const WorkPoll = 5 * time.Second

// MaxWorkAttempts bounds the claims of one item: an item whose handler
// kills the daemon would otherwise be requeued by every restart.
const MaxWorkAttempts = 3

// WorkPing is the kind every Worker handles by doing nothing: an item of
// it shows that a host's worker runs (a test, an operator's check).
const WorkPing = "ping"

// Handler carries out one work item on this host. Its error fails the
// item (store.Work.Finish); a handler interrupted by the end of ctx
// leaves it claimed, and the next start of this host's daemon requeues it.
type Handler func(ctx context.Context, w store.WorkItem) error

// Worker carries out the work items the installation queues for this host
// (store.Work): on a notification on its host's channel and every
// WorkPoll, it claims the oldest queued item, runs the handler of its
// kind, finishes it with the handler's error, and claims again until none
// is left.
type Worker struct {
	store    store.Store
	listener store.Listener // nil: poll only
	hostID   int64
	poll     time.Duration
	log      *slog.Logger
	started  time.Time

	mu       sync.Mutex
	handlers map[string]Handler
	wake     chan struct{}
}

// NewWorker returns the worker of host hostID. listener, when not nil
// (PostgreSQL), wakes it on store.WorkChannel(hostID).
func NewWorker(st store.Store, listener store.Listener, hostID int64, log *slog.Logger) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{store: st, listener: listener, hostID: hostID, poll: WorkPoll, log: log, started: time.Now(),
		handlers: map[string]Handler{WorkPing: func(context.Context, store.WorkItem) error { return nil }},
		wake:     make(chan struct{}, 1)}
}

// Handle sets the handler of kind.
func (w *Worker) Handle(kind string, h Handler) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handlers[kind] = h
}

// Wake makes the worker look for work now (after a local Enqueue on a
// store that does not notify).
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx ends. It first requeues this host's items claimed
// before NewWorker: one daemon runs per host, so they were claimed by this
// host's previous daemon, which died before finishing them.
func (w *Worker) Run(ctx context.Context) {
	var n int64
	err := w.store.Update(ctx, func(tx store.Tx) (err error) { n, err = tx.Work().Requeue(w.hostID, w.started); return err })
	switch {
	case err != nil:
		w.log.Warn("requeue of unfinished work failed", "host_id", w.hostID, "err", err)
	case n > 0:
		w.log.Info("requeued work this host's last daemon left unfinished", "host_id", w.hostID, "items", n)
	}
	var notes <-chan store.Notification
	if w.listener != nil {
		notes = w.listener.Listen(ctx, store.WorkChannel(w.hostID))
	}
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	for {
		w.drain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.wake:
		case _, ok := <-notes:
			if !ok {
				notes = nil
			}
		}
	}
}

// drain carries out items until none is queued or ctx ends.
func (w *Worker) drain(ctx context.Context) {
	for ctx.Err() == nil {
		var item *store.WorkItem
		err := w.store.Update(ctx, func(tx store.Tx) (err error) {
			item, err = tx.Work().Claim(w.hostID, time.Now())
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("claim of work failed", "host_id", w.hostID, "err", err)
			}
			return
		}
		if item == nil {
			return
		}
		w.carryOut(ctx, *item)
	}
}

// carryOut runs item's handler and finishes the item with its result.
func (w *Worker) carryOut(ctx context.Context, item store.WorkItem) {
	log := w.log.With("work", item.ID, "kind", item.Kind, "subject", item.Subject, "attempt", item.Attempts)
	w.mu.Lock()
	h := w.handlers[item.Kind]
	w.mu.Unlock()
	var err error
	switch {
	case h == nil:
		err = fmt.Errorf("this host has no handler for work of kind %q", item.Kind)
	case item.Attempts > MaxWorkAttempts:
		err = fmt.Errorf("gave up after %d attempts: each ended with its daemon", item.Attempts-1)
	default:
		start := time.Now()
		err = runHandler(ctx, h, item)
		if ctx.Err() != nil {
			log.Info("work interrupted; the next start requeues it", "err", err)
			return
		}
		log = log.With("took", time.Since(start).Round(time.Millisecond))
	}
	text := ""
	if err != nil {
		text = err.Error()
		log.Warn("work failed", "err", err)
	} else {
		log.Info("work done")
	}
	if ferr := w.store.Update(ctx, func(tx store.Tx) error { return tx.Work().Finish(item.ID, text) }); ferr != nil {
		log.Warn("finishing work failed", "err", ferr)
	}
}

// runHandler runs h, turning a panic into the item's error: one bad item
// must not stop the host's worker.
func runHandler(ctx context.Context, h Handler, item store.WorkItem) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, item)
}
