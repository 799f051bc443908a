package events

import (
	"context"
	"strconv"
	"sync"

	"stagehand/internal/store"
)

// Relay publishes to this daemon's followers the events that the other
// daemons sharing the store record, until ctx ends. Each committed event
// is notified on store.EventsChannel with its id only (the store stays the
// one source of what it says, and who may read it is decided as for a
// local event); Relay loads it and publishes it unless this Log recorded
// it, which published it already. After the listener lost its connection
// (a Resumed notification) it reads what was recorded since the last
// event it saw. A store with one daemon (SQLite) needs no relay.
func (l *Log) Relay(ctx context.Context, listener store.Listener) {
	var last int64 // the highest id seen, 0 before the first
	for n := range listener.Listen(ctx, store.EventsChannel) {
		if n.Resumed {
			if last > 0 {
				last = l.relayAfter(ctx, last)
			}
			continue
		}
		id, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil || id <= 0 {
			l.log.Warn("event notification without an event id", "payload", n.Payload)
			continue
		}
		last = max(last, id)
		if l.own.take(id) {
			continue
		}
		l.relayOne(ctx, id)
	}
}

// relayOne loads event id and publishes it.
func (l *Log) relayOne(ctx context.Context, id int64) {
	var es []store.Event
	err := l.store.View(ctx, func(tx store.Tx) (err error) { es, err = tx.Events().List(id-1, 1); return err })
	switch {
	case err != nil:
		if ctx.Err() == nil {
			l.log.Warn("relay of another host's event failed", "event", id, "err", err)
		}
	case len(es) == 1 && es[0].ID == id:
		l.hub.publish(view(es[0]))
	}
	// Otherwise pruned between its commit and now: nothing to show.
}

// relayAfter publishes the events after id that this Log did not record
// and returns the highest id it saw.
func (l *Log) relayAfter(ctx context.Context, id int64) int64 {
	for {
		var es []store.Event
		err := l.store.View(ctx, func(tx store.Tx) (err error) { es, err = tx.Events().List(id, MaxPage); return err })
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("catching up on other hosts' events failed", "after", id, "err", err)
			}
			return id
		}
		for _, e := range es {
			if !l.own.take(e.ID) {
				l.hub.publish(view(e))
			}
			id = e.ID
		}
		if len(es) < MaxPage {
			return id
		}
	}
}

// ownCapacity bounds the ids remembered: Relay takes each soon after its
// commit, so only ids of transactions rolled back after Add (never
// notified) stay, and the oldest of them make room.
const ownCapacity = 4096

// ownIDs is the set of the events this daemon recorded and Relay has not
// seen yet.
type ownIDs struct {
	mu    sync.Mutex
	ids   map[int64]struct{}
	order []int64 // insertion order, for evicting the oldest
}

// add notes id; it runs inside the recording transaction, before the
// commit sends the notification, so Relay always finds it.
func (o *ownIDs) add(id int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ids == nil {
		o.ids = map[int64]struct{}{}
	}
	o.ids[id] = struct{}{}
	o.order = append(o.order, id)
	if len(o.order) > ownCapacity {
		// Forget the oldest half that is still there.
		for _, old := range o.order[:ownCapacity/2] {
			delete(o.ids, old)
		}
		o.order = append([]int64(nil), o.order[ownCapacity/2:]...)
	}
}

// take reports whether id is this daemon's, and forgets it.
func (o *ownIDs) take(id int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.ids[id]
	delete(o.ids, id)
	return ok
}
