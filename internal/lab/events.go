package lab

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// The event log: every operation that changes state ends with one call to
// record (or recordFailure, from failOp), which appends an event to the
// store and tells live followers. record also does the lease bookkeeping
// that follows from the operation, in the same transaction: a new
// configuration, library entry or archive gets its storage lease, a deploy
// starts the deployment lease, and deploys, undeploys, checkouts, restores
// and exports mark their subject used (what "idle" is measured from).

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

const (
	actorKey ctxKey = iota
	storageLeaseKey
	deployLeaseKey
)

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

// WithStorageLease returns ctx asking that what an operation under it
// creates (configuration, library entry, archive) gets a storage lease of
// d instead of the daemon's default; 0 means never. It is a request-scoped
// option of every creating operation, so it rides on the context like the
// actor rather than widening each signature.
func WithStorageLease(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, storageLeaseKey, d)
}

// WithDeployLease returns ctx asking that a deploy under it gets a
// deployment lease of d (0: none); it also becomes the configuration's
// setting for later deploys.
func WithDeployLease(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, deployLeaseKey, d)
}

func durationOf(ctx context.Context, key ctxKey) (time.Duration, bool) {
	d, ok := ctx.Value(key).(time.Duration)
	return d, ok
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

// SubscribeEvents returns a channel of the events recorded from now on and
// the function that ends the subscription. The channel is closed when the
// follower falls more than a buffer behind; it should then read what it
// missed with ListEvents and subscribe again.
func (s *Service) SubscribeEvents() (<-chan EventView, func()) {
	return s.life.hub.subscribe()
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

// ListEvents returns one page of the events after the event with ID after,
// oldest first: EventPageSize(limit) events at most. The next page starts
// after the last ID returned.
func (s *Service) ListEvents(ctx context.Context, after int64, limit int) ([]EventView, error) {
	limit = EventPageSize(limit)
	var out []EventView
	err := s.store.View(ctx, func(tx store.Tx) error {
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

func eventView(e store.Event) EventView {
	return EventView{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Subject: e.Subject, Result: e.Result, Detail: e.Detail}
}

// Actions whose success creates the subject, which then gets its storage
// lease.
var creatingActions = map[string]bool{
	"create": true, "clone": true, "full-clone": true, "capture": true, "checkout": true,
	"archive": true, "restore": true, "import": true,
}

// Actions that mark their subject used.
var usingActions = map[string]bool{"deploy": true, "undeploy": true, "export": true}

// record appends a successful event for what was done to subject and keeps
// the lease bookkeeping that follows from it (see the top of this file).
// Failing to record is logged, never returned: the operation is done.
func (s *Service) record(ctx context.Context, object, action, subject, detail string) {
	s.appendEvent(ctx, store.Event{Actor: actorOf(ctx), Action: action, Object: object, Subject: subject, Result: ResultOK, Detail: detail})
}

// recordFailure appends a failed event.
func (s *Service) recordFailure(ctx context.Context, object, action, subject string, err error) {
	s.appendEvent(ctx, store.Event{Actor: actorOf(ctx), Action: action, Object: object, Subject: subject, Result: ResultFailed, Detail: err.Error()})
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

// maxEventDetail bounds an event's detail (often an error message that
// quotes what the user sent), so the log cannot be grown by a long input.
const maxEventDetail = 2048

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

func (s *Service) appendEvent(ctx context.Context, e store.Event) {
	ctx = context.WithoutCancel(ctx)
	e.At = s.now()
	e.Detail = clip(e.Detail, maxEventDetail)
	e.Subject = clip(e.Subject, maxEventDetail)
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if e.Result == ResultOK {
			if err := s.leaseBookkeeping(ctx, tx, e); err != nil {
				return err
			}
		}
		return tx.AddEvent(&e)
	})
	if err != nil {
		s.log.Error("record event", "action", e.Action, "subject", e.Subject, "err", err)
		return
	}
	s.life.hub.publish(eventView(e))
}

// leaseBookkeeping updates the lease of e's subject for e.
func (s *Service) leaseBookkeeping(ctx context.Context, tx store.Tx, e store.Event) error {
	creating, using := creatingActions[e.Action], usingActions[e.Action]
	if !creating && !using && e.Action != "deploy" && e.Action != "undeploy" {
		return nil
	}
	l, err := s.leaseOf(tx, e.Object, e.Subject)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil // gone meanwhile (or a template): nothing to keep
	}
	if err != nil {
		return err
	}
	now := e.At
	if creating && l.ID == 0 {
		storage := s.life.policy.DefaultStorage
		if d, ok := durationOf(ctx, storageLeaseKey); ok {
			storage = d
		}
		if storage > 0 {
			l.StorageExpires = now.Add(storage)
		}
		if l.ConfigID != 0 {
			l.DeployLease = s.life.policy.DefaultDeploy
		}
		l.LastUsed = now // idle counts from creation until first used
	}
	if using {
		l.LastUsed = now
	}
	switch e.Action {
	case "deploy":
		if d, ok := durationOf(ctx, deployLeaseKey); ok {
			l.DeployLease = d
		}
		l.DeployExpires = time.Time{}
		if l.DeployLease > 0 {
			l.DeployExpires = now.Add(l.DeployLease)
		}
	case "undeploy":
		l.DeployExpires = time.Time{}
	}
	return tx.PutLease(l)
}

// leaseOf returns the lease of a configuration, library entry or archive by
// name, or a new one (ID 0) with the defaults when it has none yet. Other
// objects are ErrNotFound.
func (s *Service) leaseOf(tx store.Tx, object, name string) (*store.Lease, error) {
	var l *store.Lease
	var err error
	fresh := &store.Lease{UndeployAction: store.UndeploySave}
	switch object {
	case ObjectConfig, ObjectLibrary:
		c, gerr := tx.GetConfig(name)
		if gerr != nil {
			return nil, gerr
		}
		fresh.ConfigID = c.ID
		l, err = tx.LeaseOfConfig(c.ID)
	case ObjectArchive:
		a, gerr := tx.GetArchive(name)
		if gerr != nil {
			return nil, gerr
		}
		fresh.ArchiveID = a.ID
		l, err = tx.LeaseOfArchive(a.ID)
	default:
		return nil, errdefs.NotFound("%s %q has no lease", object, name)
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		return fresh, nil
	}
	return l, err
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
