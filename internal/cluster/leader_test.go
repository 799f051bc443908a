package cluster

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stagehand/internal/store/postgres/pgtest"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	pgtest.Main(m, func(s *pgtest.Server) { server = s })
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// lockHolder returns the server process id of the session holding key,
// or 0.
func lockHolder(t *testing.T, dsn string, key int64) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pid int
	err = conn.QueryRow(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $1`, key).Scan(&pid)
	if err == pgx.ErrNoRows {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestLeaderOneAtATime: two daemons' Leaders on one database: exactly one
// runs the loop; when the leader's connection is killed (its server
// process terminated, as when its host dies) the other takes over within
// OfflineAfter and the old one's loop is stopped; when a leader stops
// (its daemon shuts down) the other takes over too. Never do both run.
func TestLeaderOneAtATime(t *testing.T) {
	dsn := server.Database(t)
	const key = ReaperLock
	var (
		running, maxRunning atomic.Int32
		mu                  sync.Mutex
		runs                []string
	)
	loop := func(name string) func(ctx context.Context) {
		return func(ctx context.Context) {
			n := running.Add(1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			mu.Lock()
			runs = append(runs, name)
			mu.Unlock()
			<-ctx.Done()
			running.Add(-1)
		}
	}
	type daemon struct {
		l    *Leader
		stop context.CancelFunc
		done chan struct{}
	}
	start := func(name string) *daemon {
		ctx, cancel := context.WithCancel(context.Background())
		d := &daemon{l: NewLeader(dsn, key, testLog(t).With("daemon", name)), stop: cancel, done: make(chan struct{})}
		go func() { defer close(d.done); d.l.Run(ctx, loop(name)) }()
		t.Cleanup(func() { cancel(); <-d.done })
		return d
	}
	a, b := start("a"), start("b")
	waitFor := func(what string, within time.Duration, cond func() bool) time.Duration {
		t.Helper()
		began := time.Now()
		for !cond() {
			if time.Since(began) > within {
				t.Fatalf("%s: not within %v", what, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(began)
	}
	waitFor("a leader", OfflineAfter, func() bool { return running.Load() == 1 })
	time.Sleep(2 * checkEvery) // and it stays one
	if a.l.Leading() == b.l.Leading() {
		t.Fatalf("leading: a %v, b %v; want exactly one", a.l.Leading(), b.l.Leading())
	}
	leader, follower := a, b
	if b.l.Leading() {
		leader, follower = b, a
	}

	// Kill the leader's connection from the server's side.
	pid := lockHolder(t, dsn, key)
	if pid == 0 {
		t.Fatal("nobody holds the lock")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	took := waitFor("the follower takes over after the leader's connection died", OfflineAfter, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return follower.l.Leading() && len(runs) == 2
	})
	if leader.l.Leading() {
		t.Error("the old leader still leads after losing its connection")
	}
	t.Logf("takeover after the leader's connection was killed: %v (bound %v)", took.Round(time.Millisecond), OfflineAfter)

	// Stop the new leader's daemon: the old one (reconnected) leads again.
	follower.stop()
	<-follower.done
	took = waitFor("the other daemon takes over after the leader stopped", OfflineAfter, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return leader.l.Leading() && len(runs) == 3
	})
	t.Logf("takeover after the leader stopped: %v", took.Round(time.Millisecond))
	if m := maxRunning.Load(); m != 1 {
		t.Errorf("%d loops ran at once, want 1", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 3 || runs[0] == runs[1] || runs[2] != runs[0] {
		t.Errorf("loops run: %v, want three terms", runs)
	}
}
