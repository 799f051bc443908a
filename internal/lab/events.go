package lab

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"stagehand/internal/store"
)

// The event log: every operation that changes state ends by telling its
// Recorder what it did (record, or recordFailure from failOp). The log
// appends the event to the store and tells live followers. It keeps no
// other state: leases are written by the operations themselves, in the
// transaction that commits them (see leaseKeeper in leases.go).

// Objects of events.
const (
	ObjectConfig   = "config"
	ObjectLibrary  = "library"
	ObjectArchive  = "archive"
	ObjectTemplate = "template"
	ObjectNetwork  = "network"
)

// Event results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// Actors of the lab's own actions.
const (
	ActorReaper    = "reaper"
	ActorAnonymous = "anonymous"
)

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

// Recorder is the event log as the operations see it.
type Recorder interface {
	// Record appends e after the operation committed. It never fails the
	// operation, which is done: a failure to record is logged.
	Record(ctx context.Context, e Event)
}

// EventView is one entry of the event log.
type EventView struct {
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

// EventLog is the Recorder over the store: it appends events, pages
// through them, prunes old ones and fans new ones out to live followers.
type EventLog struct {
	store store.Store
	now   func() time.Time
	log   *slog.Logger
	hub   eventHub
}

// NewEventLog returns the event log over st; now stamps the events.
func NewEventLog(st store.Store, now func() time.Time, log *slog.Logger) *EventLog {
	return &EventLog{store: st, now: now, log: log}
}

var _ Recorder = (*EventLog)(nil)

// maxEventDetail bounds an event's detail (often an error message that
// quotes what the user sent), so the log cannot be grown by a long input.
const maxEventDetail = 2048

// Record appends e, by the actor of ctx, and publishes it to followers.
func (l *EventLog) Record(ctx context.Context, e Event) {
	se := store.Event{
		At: l.now().UTC(), Actor: actorOf(ctx), Action: e.Action, Object: e.Object,
		Subject: clip(e.Subject, maxEventDetail), Result: e.Result, Detail: clip(e.Detail, maxEventDetail),
	}
	err := l.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error { return tx.AddEvent(&se) })
	if err != nil {
		l.log.Error("record event", "action", se.Action, "subject", se.Subject, "err", err)
		return
	}
	l.hub.publish(eventView(se))
}

// Pages of the event log: a list holds DefaultEventPage events unless the
// caller asks for another count, and never more than MaxEventPage, so no
// request (and no follower catching up) loads the whole log at once.
const (
	DefaultEventPage = 100
	MaxEventPage     = 1000
)

// EventPageSize is the number of events a page asked with limit holds:
// DefaultEventPage for limit <= 0, at most MaxEventPage.
func EventPageSize(limit int) int {
	if limit <= 0 {
		return DefaultEventPage
	}
	return min(limit, MaxEventPage)
}

// List returns one page of the events after the event with ID after,
// oldest first: EventPageSize(limit) events at most. The next page starts
// after the last ID returned.
func (l *EventLog) List(ctx context.Context, after int64, limit int) ([]EventView, error) {
	limit = EventPageSize(limit)
	var out []EventView
	err := l.store.View(ctx, func(tx store.Tx) error {
		es, err := tx.ListEvents(after, limit)
		for _, e := range es {
			out = append(out, eventView(e))
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
func (l *EventLog) Subscribe() (<-chan EventView, func()) {
	return l.hub.subscribe()
}

// Prune deletes the events recorded before before and returns how many.
func (l *EventLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := l.store.Update(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.DeleteEventsBefore(before)
		return err
	})
	return n, err
}

// eventHub fans new events out to live followers.
type eventHub struct {
	mu   sync.Mutex
	subs map[chan EventView]struct{}
}

// subscriberBuffer is how many events a follower may lag behind before it
// is dropped; it then resumes from the store with the last ID it saw.
const subscriberBuffer = 256

func (h *eventHub) subscribe() (<-chan EventView, func()) {
	ch := make(chan EventView, subscriberBuffer)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan EventView]struct{}{}
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

func (h *eventHub) publish(e EventView) {
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

func eventView(e store.Event) EventView {
	return EventView{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Subject: e.Subject, Result: e.Result, Detail: e.Detail}
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

// SubscribeEvents returns a channel of the events recorded from now on and
// the function that ends the subscription (see EventLog.Subscribe).
func (s *Service) SubscribeEvents() (<-chan EventView, func()) {
	return s.eventLog.Subscribe()
}

// ListEvents returns one page of the events after the event with ID after
// (see EventLog.List).
func (s *Service) ListEvents(ctx context.Context, after int64, limit int) ([]EventView, error) {
	return s.eventLog.List(ctx, after, limit)
}

// record tells the Recorder that the operation did action to subject.
func (s *Service) record(ctx context.Context, object, action, subject, detail string) {
	s.events.Record(ctx, Event{Object: object, Action: action, Subject: subject, Result: ResultOK, Detail: detail})
}

// recordFailure tells the Recorder that action on subject failed.
func (s *Service) recordFailure(ctx context.Context, object, action, subject string, err error) {
	s.events.Record(ctx, Event{Object: object, Action: action, Subject: subject, Result: ResultFailed, Detail: err.Error()})
}

// opObjects names the object of the journal's operation kinds, for the
// failure events failOp records.
var opObjects = map[string]string{
	"import": ObjectTemplate, "delete-template": ObjectTemplate,
	"archive": ObjectArchive, "archive-import": ObjectArchive, "export": ObjectArchive, "delete-archive": ObjectArchive,
	"capture": ObjectLibrary,
}

// recordOpFailure records the failure of a journalled operation.
func (s *Service) recordOpFailure(ctx context.Context, op *store.Op, err error) {
	object := opObjects[op.Kind]
	if object == "" {
		object = ObjectConfig
	}
	s.recordFailure(ctx, object, op.Kind, op.Subject, err)
}

func kindObject(kind string) string {
	if kind == store.KindLibrary {
		return ObjectLibrary
	}
	return ObjectConfig
}

func deployDetail(opts DeployOptions) string {
	if opts.Fenced {
		return "fenced, policy " + opts.FencePolicy
	}
	return "unfenced"
}

func undeployDetail(saveState bool) string {
	if saveState {
		return "state saved"
	}
	return "state discarded"
}
