package events_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stagehand/internal/lab/events"
	"stagehand/internal/store"
	"stagehand/internal/store/postgres"
	"stagehand/internal/store/postgres/pgtest"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	pgtest.Main(m, func(s *pgtest.Server) { server = s })
}

// TestRelayPublishesOtherHostsEvents: two daemons' event logs on one
// PostgreSQL database; a follower of daemon B sees, once each and within
// a second, the events daemon A records (Record and Append) and those B
// records itself (never twice), and after B's listener lost its
// connection, the events recorded meanwhile.
func TestRelayPublishesOtherHostsEvents(t *testing.T) {
	if server == nil {
		t.Skip("no PostgreSQL server")
	}
	dsn := server.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func() *postgres.Store {
		st, err := postgres.Open(ctx, dsn, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stA, stB := open(), open()
	a, b := events.New(stA, time.Now, slog.New(slog.DiscardHandler)), events.New(stB, time.Now, slog.New(slog.DiscardHandler))
	rctx, stop := context.WithCancel(ctx)
	relayed := make(chan struct{})
	go func() { defer close(relayed); b.Relay(rctx, stB) }()
	defer func() { stop(); <-relayed }()
	follow, unsubscribe := b.Subscribe()
	defer unsubscribe()

	// Until B's listener listens, A's events may go unseen: record until
	// one arrives, then drain.
	for deadline := time.Now().Add(10 * time.Second); ; {
		a.Record(ctx, events.Event{Object: "config", Action: "ping", Result: events.ResultOK})
		if _, ok := receive(follow, 100*time.Millisecond); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B's follower saw none of A's events in 10 s")
		}
	}
	for _, ok := receive(follow, 300*time.Millisecond); ok; _, ok = receive(follow, 300*time.Millisecond) {
	}

	start := time.Now()
	a.Record(events.WithActor(ctx, "alice"), events.Event{Object: "config", Action: "deploy", Subject: "web", Result: events.ResultOK})
	got, ok := receive(follow, time.Second)
	if !ok || got.Action != "deploy" || got.Subject != "web" || got.Actor != "alice" {
		t.Fatalf("B's follower within 1 s: %+v (%v), want A's deploy of web by alice", got, ok)
	}
	t.Logf("A's event reached B's follower in %s", time.Since(start).Round(time.Millisecond))

	var publish func()
	if err := stA.Update(ctx, func(tx store.Tx) (err error) {
		publish, err = a.Append(ctx, tx, events.Event{Object: "user", Action: "create", Subject: "bob"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	publish()
	if got, ok := receive(follow, time.Second); !ok || got.Subject != "bob" {
		t.Fatalf("A's appended event on B: %+v (%v)", got, ok)
	}

	b.Record(ctx, events.Event{Object: "config", Action: "undeploy", Subject: "db", Result: events.ResultOK})
	if got, ok := receive(follow, time.Second); !ok || got.Subject != "db" {
		t.Fatalf("B's own event: %+v (%v)", got, ok)
	}
	if got, ok := receive(follow, 500*time.Millisecond); ok {
		t.Fatalf("B's own event published twice (or a stray event): %+v", got)
	}

	// B's listener loses its connection; A records meanwhile.
	killListeners(t, ctx, dsn)
	a.Record(ctx, events.Event{Object: "config", Action: "delete", Subject: "old", Result: events.ResultOK})
	got, ok = receive(follow, 5*time.Second)
	if !ok || got.Subject != "old" {
		t.Fatalf("the event recorded while B's listener reconnected: %+v (%v)", got, ok)
	}
	if got, ok := receive(follow, 500*time.Millisecond); ok {
		t.Fatalf("an event published twice after the reconnection: %+v", got)
	}
}

// killListeners ends the store listeners' connections to the database.
func killListeners(t *testing.T, ctx context.Context, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'stagehand listener'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("kill the listener: %d killed, %v", n, err)
	}
}

func receive(ch <-chan events.View, within time.Duration) (events.View, bool) {
	select {
	case e, ok := <-ch:
		return e, ok
	case <-time.After(within):
		return events.View{}, false
	}
}
