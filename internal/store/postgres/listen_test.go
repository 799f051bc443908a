package postgres

import (
	"context"
	"strconv"
	"testing"
	"time"

	"stagehand/internal/store"
)

// TestListenNotifiesCommittedIDs: a listener on another Store of the same
// database hears an event's id and a work item's id on the host's channel
// when the transaction commits, nothing of a transaction rolled back, and
// listens again (Resumed) after its connection is killed.
func TestListenNotifiesCommittedIDs(t *testing.T) {
	if server == nil {
		t.Skip("no PostgreSQL server")
	}
	defer func(d time.Duration) { listenIdle = d }(listenIdle)
	listenIdle = 100 * time.Millisecond
	dsn := server.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer, err := Open(ctx, dsn, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, err := Open(ctx, dsn, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	var host store.Host
	if err := writer.Update(ctx, func(tx store.Tx) error {
		host = store.Host{Name: "h", AdvertiseURL: "https://h"}
		return tx.Hosts().Register(&host)
	}); err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	notes := reader.Listen(lctx, store.EventsChannel, store.WorkChannel(host.ID))
	// LISTEN runs on the listener's goroutine: wait until it hears.
	waitListening(t, writer, notes)

	// A rolled-back event is never notified.
	_ = writer.Update(ctx, func(tx store.Tx) error {
		if err := tx.Events().Add(&store.Event{Action: "x", Subject: "rolled back"}); err != nil {
			return err
		}
		return context.Canceled
	})
	var ev store.Event
	var w store.WorkItem
	if err := writer.Update(ctx, func(tx store.Tx) error {
		ev = store.Event{Action: "deploy", Subject: "web"}
		if err := tx.Events().Add(&ev); err != nil {
			return err
		}
		w = store.WorkItem{HostID: host.ID, Kind: "undeploy", Subject: "web"}
		return tx.Work().Enqueue(&w)
	}); err != nil {
		t.Fatal(err)
	}
	got := []store.Notification{next(t, notes), next(t, notes)}
	want := []store.Notification{
		{Channel: store.EventsChannel, Payload: strconv.FormatInt(ev.ID, 10)},
		{Channel: store.WorkChannel(host.ID), Payload: strconv.FormatInt(w.ID, 10)},
	}
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("notifications %+v, want %+v", got, want)
	}

	// Kill the listener's connection: it listens again and says so.
	if _, err := writer.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND datname = current_database() AND application_name = $1`, listenerName); err != nil {
		t.Fatal(err)
	}
	if n := next(t, notes); !n.Resumed {
		t.Fatalf("after the connection was killed: %+v, want Resumed", n)
	}
	waitListening(t, writer, notes)

	// Quiet for several idle periods: the pings keep the connection, and
	// a notification after them still arrives on it (no Resumed).
	time.Sleep(5 * listenIdle)
	if err := writer.Update(ctx, func(tx store.Tx) error { ev = store.Event{Action: "late"}; return tx.Events().Add(&ev) }); err != nil {
		t.Fatal(err)
	}
	if n := next(t, notes); n != (store.Notification{Channel: store.EventsChannel, Payload: strconv.FormatInt(ev.ID, 10)}) {
		t.Fatalf("after a quiet time: %+v, want event %d", n, ev.ID)
	}
	stop()
	for range notes { // closed when the context ends
	}
}

// waitListening adds events until the listener hears one, then drains.
func waitListening(t *testing.T, s *Store, notes <-chan store.Notification) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := s.Update(context.Background(), func(tx store.Tx) error {
			return tx.Events().Add(&store.Event{Action: "ping"})
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-notes:
			if n.Channel == store.EventsChannel {
				// Drain the pings still in flight.
				for {
					select {
					case <-notes:
					case <-time.After(200 * time.Millisecond):
						return
					}
				}
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("the listener heard nothing in 10 s")
}

func next(t *testing.T, notes <-chan store.Notification) store.Notification {
	t.Helper()
	select {
	case n := <-notes:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification in 10 s")
		return store.Notification{}
	}
}
