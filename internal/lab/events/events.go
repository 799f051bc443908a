// Package events is the lab's event log: it stamps what an operation did
// with who asked and when, appends it to the store, pages through it,
// follows it live and prunes it. It knows nothing of the operations.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"stagehand/internal/store"
)

// Event results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// ActorAnonymous names who asked when the context does not (WithActor).
const ActorAnonymous = "anonymous"

// Event is what an operation tells the event log: what it did (Action) to
// which Object and Subject, with which Result and Detail. The log adds who
// asked (WithActor) and when.
type Event struct {
	Object  string
	Action  string
	Subject string
	Result  string
	Detail  string
}

// View is one entry of the event log.
type View struct {
	ID      int64
	At      time.Time
	Actor   string
	Action  string
	Object  string
	Subject string
	Result  string
	Detail  string
}

type ctxKey int

const actorKey ctxKey = iota

// WithActor returns ctx carrying who asks for the operations done under it
// (the API sets it from the request); events name them.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

func actorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey).(string); ok && a != "" {
		return a
	}
	return ActorAnonymous
}

// Log is the event log over the store: it appends events, pages through
// them, prunes old ones and fans new ones out to live followers.
type Log struct {
	store store.Store
	now   func() time.Time
	log   *slog.Logger
	hub   hub
	own   ownIDs // the events this daemon recorded (Relay skips them)
}

// New returns the event log over st; now stamps the events.
func New(st store.Store, now func() time.Time, log *slog.Logger) *Log {
	return &Log{store: st, now: now, log: log}
}

// maxDetail bounds an event's detail (often an error message that quotes
// what the user sent), so the log cannot be grown by a long input.
const maxDetail = 2048

// Record appends e, by the actor of ctx, and publishes it to followers.
// It never fails the operation, which is done: a failure to record is
// logged.
func (l *Log) Record(ctx context.Context, e Event) {
	se := store.Event{
		At: l.now().UTC(), Actor: actorOf(ctx), Action: e.Action, Object: e.Object,
		Subject: clip(e.Subject, maxDetail), Result: e.Result, Detail: clip(e.Detail, maxDetail),
	}
	err := l.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		if err := tx.Events().Add(&se); err != nil {
			return err
		}
		l.own.add(se.ID)
		return nil
	})
	if err != nil {
		l.log.Error("record event", "action", se.Action, "subject", se.Subject, "err", err)
		return
	}
	l.hub.publish(view(se))
}

// Append adds e, by the actor of ctx, in tx: the transaction of the change
// it records, so that the change and its event commit together or not at
// all (the directory's changes: users, workspaces, tokens, shares). Once
// tx has committed, publish tells the live followers, as Record does; if
// tx did not commit, drop publish.
func (l *Log) Append(ctx context.Context, tx store.Tx, e Event) (publish func(), err error) {
	se := store.Event{
		At: l.now().UTC(), Actor: actorOf(ctx), Action: e.Action, Object: e.Object,
		Subject: clip(e.Subject, maxDetail), Result: e.Result, Detail: clip(e.Detail, maxDetail),
	}
	if se.Result == "" {
		se.Result = ResultOK
	}
	if err := tx.Events().Add(&se); err != nil {
		return nil, err
	}
	l.own.add(se.ID)
	return func() { l.hub.publish(view(se)) }, nil
}

// Pages of the event log: a list holds DefaultPage events unless the
// caller asks for another count, and never more than MaxPage, so no
// request (and no follower catching up) loads the whole log at once.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

// PageSize is the number of events a page asked with limit holds:
// DefaultPage for limit <= 0, at most MaxPage.
func PageSize(limit int) int {
	if limit <= 0 {
		return DefaultPage
	}
	return min(limit, MaxPage)
}

// List returns one page of the events after the event with ID after,
// oldest first: PageSize(limit) events at most. The next page starts
// after the last ID returned.
func (l *Log) List(ctx context.Context, after int64, limit int) ([]View, error) {
	limit = PageSize(limit)
	var out []View
	err := l.store.View(ctx, func(tx store.Tx) error {
		es, err := tx.Events().List(after, limit)
		for _, e := range es {
			out = append(out, view(e))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// Subscribe returns a channel of the events recorded from now on and the
// function that ends the subscription. The channel is closed when the
// follower falls more than a buffer behind; it should then read what it
// missed with List and subscribe again.
func (l *Log) Subscribe() (<-chan View, func()) {
	return l.hub.subscribe()
}

// Audience says which events the caller of a context may read: all of
// them, or those f selects (the lab's access.Checker.EventFilter).
type Audience func(ctx context.Context) (f store.EventFilter, all bool, err error)

// Reader is the log as each caller reads it: only the events their
// Audience lets them. It is safe for concurrent use.
type Reader struct {
	log      *Log
	audience Audience
}

// Reader returns the log read through a.
func (l *Log) Reader(a Audience) *Reader { return &Reader{log: l, audience: a} }

// List is Log.List of the events the caller of ctx may read, filtered in
// the store's query: a page holds PageSize(limit) of them at most.
func (r *Reader) List(ctx context.Context, after int64, limit int) ([]View, error) {
	f, all, err := r.audience(ctx)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if all {
		return r.log.List(ctx, after, limit)
	}
	limit = PageSize(limit)
	var out []View
	err = r.log.store.View(ctx, func(tx store.Tx) error {
		es, err := tx.Visible().Events(f, after, limit)
		for _, e := range es {
			out = append(out, view(e))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// followerRefresh bounds how long a follower's filter is kept: a
// membership or share taken away stops showing events within it.
const followerRefresh = 30 * time.Second

// Follower is a subscription (Log.Subscribe) of one caller: C carries
// every new event, Shows says which of them the caller may read.
type Follower struct {
	C      <-chan View
	stop   func()
	r      *Reader
	filter store.EventFilter
	all    bool
	loaded time.Time
}

// Follow subscribes the caller of ctx to the events recorded from now on
// (see Subscribe), with the caller's filter loaded once.
func (r *Reader) Follow(ctx context.Context) (*Follower, error) {
	f, all, err := r.audience(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	ch, stop := r.log.Subscribe()
	return &Follower{C: ch, stop: stop, r: r, filter: f, all: all, loaded: time.Now()}, nil
}

// Shows reports whether the follower's caller may read e: always the
// events they caused; others by the object as it is now (an object made
// after Follow counts), through the filter loaded at Follow and reloaded
// every followerRefresh. The store answers with the query of List, so a
// follower and a list agree. An error ends the follow (the caller's user
// deleted, the store failing).
func (f *Follower) Shows(ctx context.Context, e View) (bool, error) {
	if f.all {
		return true, nil
	}
	if time.Since(f.loaded) >= followerRefresh {
		filter, all, err := f.r.audience(ctx)
		if err != nil {
			return false, fmt.Errorf("follow events: %w", err)
		}
		f.filter, f.all, f.loaded = filter, all, time.Now()
		if all {
			return true, nil
		}
	}
	if f.filter.Actor != "" && e.Actor == f.filter.Actor {
		return true, nil
	}
	if f.filter.NoObjects {
		return false, nil
	}
	var ok bool
	err := f.r.log.store.View(ctx, func(tx store.Tx) error {
		var err error
		ok, err = tx.Visible().Event(f.filter, e.ID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("follow events: event %d: %w", e.ID, err)
	}
	return ok, nil
}

// Close ends the subscription.
func (f *Follower) Close() { f.stop() }

// Prune deletes the events recorded before before and returns how many.
func (l *Log) Prune(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := l.store.Update(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.Events().DeleteBefore(before)
		return err
	})
	return n, err
}

// hub fans new events out to live followers.
type hub struct {
	mu   sync.Mutex
	subs map[chan View]struct{}
}

// subscriberBuffer is how many events a follower may lag behind before it
// is dropped; it then resumes from the store with the last ID it saw.
const subscriberBuffer = 256

func (h *hub) subscribe() (<-chan View, func()) {
	ch := make(chan View, subscriberBuffer)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan View]struct{}{}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *hub) publish(e View) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default: // too slow: drop it; it resumes from the store
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func view(e store.Event) View {
	return View{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Subject: e.Subject, Result: e.Result, Detail: e.Detail}
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
