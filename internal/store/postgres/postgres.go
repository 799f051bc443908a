// Package postgres is the store.Store of many hosts: N equal daemons share
// one PostgreSQL database through pooled connections (pgx). Open migrates
// the schema forward under an advisory lock, so daemons starting together
// migrate once.
//
// Writers: SQLite's store serialises them in one process; here writers on
// several hosts run at once. Update runs SERIALIZABLE, so a read followed
// by a write in one Update (IP allocation, quota checks) still sees no
// interleaved change: PostgreSQL aborts one of two transactions that would
// otherwise interleave, and Update runs the aborted one's fn again (see
// Update). View runs REPEATABLE READ READ ONLY: one snapshot, no writes.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlstore"
)

// Retries of an Update whose transaction PostgreSQL aborted to keep it
// serialisable (or to break a deadlock). The first attempt runs
// optimistically beside every other writer, holding table write_turn in
// ROW SHARE mode (which only EXCLUSIVE conflicts with). Each later one
// first takes write_turn in EXCLUSIVE mode, before its snapshot: it waits
// for the writers in flight to end, runs alone, and new writers wait for
// it (PostgreSQL queues them behind it), so a second attempt does not
// collide again. Backing off alone let 50 writers allocating from one
// pool retry each other into seconds of latency; queueing retriers only
// behind each other still let fresh writers beat one ten times. A short random wait ("jitter", below retryMaxWait)
// before queueing keeps writers that failed together from arriving in
// step.
const (
	maxAttempts  = 10
	retryMaxWait = 2 * time.Millisecond
)

// beginUpdate starts an Update's transaction. lock_timeout bounds a wait
// on a row, key or lock: a writer that waits in PostgreSQL while holding a
// lock of its process that the other writer needs would otherwise wait
// forever, unseen by PostgreSQL's deadlock detector (ipam.Allocator once
// held its mutex across CreateAllocation; TestAllocatorHoldsNoLockAcrossStoreCalls
// keeps it from doing so again). The timeout (55P03) is retried like a
// deadlock.
const beginUpdate = "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL lock_timeout = '10s'"

// Store is a Stagehand store in a PostgreSQL database. It is safe for
// concurrent use, also by several processes on several hosts.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// where names the database in errors and logs, without a password.
	where string

	// Counters of the retry loop, for logs, tests and benchmarks.
	mu      sync.Mutex
	retries int64

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string) and migrates its schema. A database whose schema is
// newer than this program fails with ErrSchemaTooNew.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errdefs.Invalid("store %s: cannot parse the connection string", redact(dsn))
	}
	where := fmt.Sprintf("postgres %s@%s/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database)
	if cfg.MaxConns < 8 {
		// Views run beside Updates, and an Update waits on a row lock with
		// its connection held: a few more than the cores.
		cfg.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	s := &Store{pool: pool, log: log, where: where}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	log.Info("store opened", "store", where, "max_conns", cfg.MaxConns)
	return s, nil
}

// redact returns dsn without its password, for messages: in a URL's user
// part (even a URL that does not parse) and in a password= field.
func redact(dsn string) string {
	dsn = urlPassword.ReplaceAllString(dsn, "${1}xxxxx@")
	return fieldPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

var (
	urlPassword   = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
	fieldPassword = regexp.MustCompile(`(password=)\S*`)
)

// Where names the database (user, host, database), without a password.
func (s *Store) Where() string { return s.where }

// Retries returns how many times Updates ran their fn again after a
// serialization failure or a deadlock.
func (s *Store) Retries() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retries
}

// errRetry marks an attempt that PostgreSQL aborted for serialisation
// (SQLSTATE 40001) or a deadlock (40P01): running it again may succeed.
var errRetry = errors.New("transaction aborted for serialisation; retry")

// Update implements store.Store. fn runs in a SERIALIZABLE transaction.
// When PostgreSQL aborts it to keep the writers serialisable, or to break
// a deadlock, Update rolls it back and runs fn again in a new transaction
// (at most maxAttempts times, waiting a random, growing time in between),
// so fn may run more than once: it must have no effect outside the
// transaction that a second run would repeat or that a rolled-back run
// would leave behind. An abort is recognised even when fn swallowed the
// statement's error, since the transaction records it.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	var last error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		opts := pgx.TxOptions{IsoLevel: pgx.Serializable, BeginQuery: beginUpdate + "; LOCK TABLE write_turn IN ROW SHARE MODE"}
		if attempt > 1 {
			opts.BeginQuery = beginUpdate + "; LOCK TABLE write_turn IN EXCLUSIVE MODE"
		}
		err := s.run(ctx, opts, true, fn)
		if !errors.Is(err, errRetry) {
			return err
		}
		last = err
		s.mu.Lock()
		s.retries++
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("store update: %w", ctx.Err())
		case <-time.After(rand.N(retryMaxWait)):
		}
	}
	s.log.Warn("store update gave up", "store", s.where, "attempts", maxAttempts, "err", last)
	return errdefs.Unavailable("store update: still conflicting with other writers after %d attempts: %v", maxAttempts, last)
}

// View implements store.Store: one snapshot, read only.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.run(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

// run runs fn in one transaction, committing only when write is set and
// fn returned nil. A panic in fn rolls back, then continues to the caller.
// It returns an error wrapping errRetry when the transaction was aborted
// for serialisation or a deadlock, whatever fn returned.
func (s *Store) run(ctx context.Context, opts pgx.TxOptions, write bool, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store transaction: %w", err)
	}
	ptx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store transaction: begin: %w", ctxErr(ctx, err))
	}
	t := &tx{ctx: ctx, tx: ptx}
	done := false
	defer func() {
		if !done {
			// A rollback on an ended context would fail; the pool then
			// closes the connection, which rolls back too.
			_ = ptx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	ferr := fn(sqlstore.New(t, dialect))
	if t.aborted != nil {
		return fmt.Errorf("%w: %v", errRetry, t.aborted)
	}
	if ferr != nil {
		return ferr
	}
	if !write {
		return nil // the deferred rollback ends it
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store transaction: %w", err)
	}
	if err := ptx.Commit(ctx); err != nil {
		done = true
		if retryable(err) {
			return fmt.Errorf("%w: commit: %v", errRetry, err)
		}
		return fmt.Errorf("store transaction: commit: %w", ctxErr(ctx, err))
	}
	done = true
	return nil
}

// retryable reports a serialization failure, a deadlock or a lock wait
// that timed out.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03")
}

// Close closes the pool. Running transactions must have ended. It is safe
// to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// ctxErr prefers the context's error: once the context ends, pgx closes the
// connection and later calls fail with a message that hides the cause.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
