package cluster

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReaperLock is the key of the advisory lock whose holder runs the
// installation's reaper and lease expiry ("stagerea" in ASCII).
const ReaperLock int64 = 0x7374616765726561

// How a Leader watches its lock. It checks its connection every
// checkEvery, each check bounded by checkTimeout: a leader whose
// connection broke stops within checkEvery+checkTimeout. A new leader
// waits that long after taking the lock before it runs anything, so that a
// leader cut off from the database (its lock released by the server) has
// stopped before the next one starts. A follower tries to take the lock
// every HeartbeatInterval, so the lock changes hands within
// HeartbeatInterval+checkEvery+checkTimeout (7 s) of the server releasing
// it. The server releases the lock when the session ends: at once for a
// closed connection or a dead process, after TCP keepalive
// (keepaliveSettings, about 5 s) for a host cut off the network. So a cut
// leader's lock changes hands within about 13 s, inside OfflineAfter (e2e
// TestPartitionedHost; with 11 s of keepalive it took 15.1 s, over it).
const (
	checkEvery   = time.Second
	checkTimeout = time.Second
)

// keepaliveSettings make the server notice a peer gone from the network
// within about 5 s (2 s idle, then 3 probes 1 s apart), instead of the
// system default of hours, so that a partitioned leader's lock is
// released. A live leader pings every checkEvery, so its connection is
// never idle that long. They do nothing on a unix socket, where a dead
// peer is seen at once.
const keepaliveSettings = "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3"

// Leader is leadership by a PostgreSQL session advisory lock held on a
// connection of its own (not the store's pool, whose connections come and
// go): whoever holds the lock leads.
type Leader struct {
	dsn     string
	key     int64
	retry   time.Duration // how often a follower tries to take the lock
	log     *slog.Logger
	leading atomic.Bool
}

// NewLeader returns the leadership of lock key in the database dsn names.
func NewLeader(dsn string, key int64, log *slog.Logger) *Leader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Leader{dsn: dsn, key: key, retry: HeartbeatInterval, log: log}
}

// Leading reports whether this Leader holds the lock and runs fn.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Run runs fn whenever this process holds the lock, until ctx ends: it
// connects, tries to take the lock every HeartbeatInterval, runs fn once
// it holds it, and cancels fn's context when the connection fails (the
// lock went with it); then it starts again. At ctx's end it waits for fn
// to return and releases the lock.
func (l *Leader) Run(ctx context.Context, fn func(ctx context.Context)) {
	for ctx.Err() == nil {
		l.term(ctx, fn)
		select {
		case <-ctx.Done():
		case <-time.After(l.retry):
		}
	}
}

// term is one connection's life: follow until the lock is taken, then
// lead until the connection or ctx ends.
func (l *Leader) term(ctx context.Context, fn func(ctx context.Context)) {
	conn, err := pgx.Connect(ctx, l.dsn)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("leader election: cannot connect to the database; trying again", "lock", l.key, "err", err)
		}
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, keepaliveSettings+"; SET application_name = 'stagehand leader'"); err != nil {
		l.log.Warn("leader election: set up the connection", "lock", l.key, "err", err)
		return
	}
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", l.key).Scan(&got); err != nil {
			if ctx.Err() == nil {
				l.log.Warn("leader election: the connection failed", "lock", l.key, "err", err)
			}
			return
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.retry):
		}
	}
	// Let a leader that lost its connection notice before this one acts.
	select {
	case <-ctx.Done():
		return
	case <-time.After(checkEvery + checkTimeout):
	}
	if !l.alive(ctx, conn) {
		return
	}
	l.log.Info("leading", "lock", l.key)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	l.leading.Store(true)
	go func() {
		defer close(done)
		fn(fctx)
	}()
	defer func() {
		cancel()
		<-done
		l.leading.Store(false)
	}()
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	running := done // nil once fn ended by itself
	for {
		select {
		case <-ctx.Done():
			uctx, c := context.WithTimeout(context.WithoutCancel(ctx), checkTimeout)
			defer c()
			cancel()
			<-done
			if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", l.key); err != nil {
				l.log.Warn("leader: release the lock (the connection's close releases it too)", "lock", l.key, "err", err)
			}
			l.log.Info("no longer leading: stopping", "lock", l.key)
			return
		case <-running:
			// fn ended by itself: lead on without it until ctx ends, so
			// that nobody else runs it either.
			running = nil
		case <-t.C:
			if !l.alive(ctx, conn) {
				l.log.Warn("leadership lost: the connection holding the lock failed", "lock", l.key)
				return
			}
		}
	}
}

// alive checks that conn still answers; a connection that does not
// within checkTimeout counts as lost.
func (l *Leader) alive(ctx context.Context, conn *pgx.Conn) bool {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	return conn.Ping(cctx) == nil
}
