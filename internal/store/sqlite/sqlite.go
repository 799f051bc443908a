// Package sqlite is the embedded implementation of store.Store: one SQLite
// database file in WAL mode, written by a single serialised connection and
// read through a pool of read-only connections. Open migrates the schema
// forward. It uses the pure-Go driver modernc.org/sqlite (no cgo).
//
// Durability: synchronous=NORMAL. A commit survives a crash of the process
// but the last commits before a power loss may be lost (the database stays
// consistent). FULL costs an fsync per commit: about ten times fewer
// Updates per second on the machine this was measured on.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"stagehand/internal/store"
	"stagehand/internal/store/sqlstore"
)

// busyTimeoutMS bounds how long a connection waits for a lock held by
// another process sharing the file. Inside one process writers never wait
// on SQLite: they queue on DB.writeTurn first.
const busyTimeoutMS = 10_000

// DB is a Stagehand store in one SQLite file. It is safe for concurrent use.
//
// Update transactions are serialised in arrival order: a goroutine waits
// for its turn (honouring its context), then runs BEGIN IMMEDIATE on the
// single write connection, so a read followed by a write inside one Update
// sees no interleaved change, and no caller ever sees SQLITE_BUSY from
// another goroutine of this process. View transactions run concurrently
// with each other and with the writer (WAL readers see the last committed
// snapshot).
type DB struct {
	path  string
	write *sql.DB // exactly one connection; BEGIN IMMEDIATE
	read  *sql.DB // query_only connections for View
	ckpt  *checkpointer
	// The hot statements (stmts.go) prepared on write and on read.
	writeHot, readHot stmtCache

	// writeTurn holds one token while an Update runs. Goroutines blocked
	// sending on a channel are woken in FIFO order, which keeps the tail
	// latency of queued writers bounded under load (database/sql hands a
	// freed connection to a random waiter).
	writeTurn chan struct{}

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database file at path, switches it to
// WAL mode and applies the schema migrations this program knows. A file
// whose schema is newer than this program fails with ErrSchemaTooNew.
func Open(ctx context.Context, path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	d := &DB{path: abs, writeTurn: make(chan struct{}, 1)}

	d.write, err = sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	// One connection, kept for the life of the DB: every Update runs on it,
	// so this process never has two SQLite writers competing for the lock.
	d.write.SetMaxOpenConns(1)
	d.write.SetMaxIdleConns(1)
	d.write.SetConnMaxLifetime(0)
	d.write.SetConnMaxIdleTime(0)
	if err := checkWAL(ctx, d.write); err != nil {
		d.write.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if err := migrate(ctx, d.write, migrations); err != nil {
		d.write.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	// After the migrations: a statement compiled against an older schema
	// would be compiled again at its first run.
	if d.writeHot, err = prepareHot(ctx, d.write); err != nil {
		d.write.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}

	d.read, err = sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		d.write.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if d.ckpt, err = startCheckpointer(abs); err != nil {
		d.read.Close()
		d.write.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	d.read.SetMaxOpenConns(readers)
	d.read.SetMaxIdleConns(readers)
	d.read.SetConnMaxLifetime(0)
	d.read.SetConnMaxIdleTime(0)
	if err := d.read.PingContext(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if d.readHot, err = prepareHot(ctx, d.read); err != nil {
		d.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	return d, nil
}

// dsn builds the driver's name for the file: a file: URI (so that any path
// survives, '?' and '%' included) with the per-connection settings, which
// the driver applies to every connection it opens.
func dsn(abs string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if readOnly {
		// Any write through View fails with SQLITE_READONLY.
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		// The checkpointer copies the WAL back in the background, so a
		// commit never waits for a checkpoint's writes and fsyncs.
		q.Add("_pragma", "wal_autocheckpoint(0)")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	return u.String()
}

// checkWAL makes sure the write connection really runs in WAL mode (some
// file systems cannot), since concurrent readers depend on it.
func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want WAL (is the file system able to hold a WAL database?)", mode)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (d *DB) Path() string { return d.path }

// Update implements store.Store. Updates run one at a time, in the order
// they asked; a context that ends while waiting for the turn ends the wait.
// Update must not be called from inside another Update's fn (it would wait
// for itself).
func (d *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	select {
	case d.writeTurn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("store update: %w", ctx.Err())
	}
	defer func() { <-d.writeTurn }()
	if err := run(ctx, d.write, d.writeHot, nil, true, fn); err != nil {
		return err
	}
	d.ckpt.poke()
	return nil
}

// View implements store.Store.
func (d *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	return run(ctx, d.read, d.readHot, &sql.TxOptions{ReadOnly: true}, false, fn)
}

// run runs fn in a transaction of db, committing only when write is set and
// fn returned nil. A panic in fn rolls back (the deferred rollback runs
// while the panic unwinds) and then continues to the caller.
func run(ctx context.Context, db *sql.DB, hot stmtCache, opts *sql.TxOptions, write bool, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store transaction: %w", err)
	}
	sqlTx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store transaction: begin: %w", ctxErr(ctx, err))
	}
	done := false
	defer func() {
		if !done {
			_ = sqlTx.Rollback()
		}
	}()
	if err := fn(sqlstore.New(&tx{ctx: ctx, tx: sqlTx, hot: hot}, dialect)); err != nil {
		return err
	}
	done = true
	if !write {
		_ = sqlTx.Rollback()
		return nil
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("store transaction: commit: %w", ctxErr(ctx, err))
	}
	return nil
}

// Close closes the database. Running transactions must have ended. It is
// safe to call more than once.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		if d.ckpt != nil {
			errs = append(errs, d.ckpt.stop())
		}
		if d.read != nil {
			errs = append(errs, d.readHot.close(), d.read.Close())
		}
		errs = append(errs, d.writeHot.close(), d.write.Close())
		if err := errors.Join(errs...); err != nil {
			d.closeErr = fmt.Errorf("close store %s: %w", d.path, err)
		}
	})
	return d.closeErr
}
