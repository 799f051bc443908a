package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"stagehand/internal/store/sqlstore"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// tx is one pgx transaction, as sqlstore runs its statements on it
// (sqlstore.Conn). Every statement runs with
// the context the transaction was started with.
//
// PostgreSQL aborts a whole transaction at a statement's error, where
// SQLite fails the statement alone; callers of the store go on after an
// expected error (a taken name, a missing record: ErrConflict), so every
// statement that can fail on a constraint runs inside a savepoint
// (guarded), sent with it in one round trip.
type tx struct {
	ctx context.Context
	tx  pgx.Tx
	// aborted is the first serialization failure or deadlock a statement
	// met: the transaction must run again, whatever fn does with the error.
	aborted error
	// eventLocked: the transaction holds the events' lock (LockEvents).
	eventLocked bool
}

var _ sqlstore.Conn = (*tx)(nil)

// note records err when it asks for the transaction to run again, and
// returns it (with the context's error first, see ctxErr).
func (t *tx) note(err error) error {
	if err != nil && t.aborted == nil && retryable(err) {
		t.aborted = err
	}
	return ctxErr(t.ctx, err)
}

// The statements are written with SQLite's ? placeholders, as in
// store/sqlite, and numbered for PostgreSQL once per text: ?N stays $N, a
// bare ? takes the next number.
var rebound sync.Map // string -> string

func rebind(query string) string {
	if q, ok := rebound.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		if c != '?' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(query) && query[i+1] >= '0' && query[i+1] <= '9' {
			b.WriteByte('$')
			continue
		}
		n++
		b.WriteString("$" + strconv.Itoa(n))
	}
	q := b.String()
	rebound.Store(query, q)
	return q
}

func (t *tx) Exec(query string, args ...any) (int64, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	tag, err := t.tx.Exec(t.ctx, rebind(query), args...)
	return tag.RowsAffected(), t.note(err)
}

// Guarded runs one statement that may fail on a constraint between
// SAVEPOINT and RELEASE, the three in one round trip, and rolls back to
// the savepoint when it fails, so the transaction goes on. scan reads the
// statement's row (RETURNING); with a nil scan the statement is executed
// and the number of rows it changed returned.
func (t *tx) Guarded(scan func(sqlstore.Scanner) error, query string, args ...any) (int64, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT guard")
	b.Queue(rebind(query), args...)
	b.Queue("RELEASE SAVEPOINT guard")
	br := t.tx.SendBatch(t.ctx, b)
	var tag pgconn.CommandTag
	_, err := br.Exec()
	if err == nil {
		if scan != nil {
			err = scan(br.QueryRow())
		} else {
			tag, err = br.Exec()
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return tag.RowsAffected(), nil
	}
	err = t.note(err)
	if t.ctx.Err() == nil {
		if _, rbErr := t.tx.Exec(t.ctx, "ROLLBACK TO SAVEPOINT guard; RELEASE SAVEPOINT guard"); rbErr != nil {
			return 0, errors.Join(err, fmt.Errorf("roll back to savepoint: %w", t.note(rbErr)))
		}
	}
	return 0, err
}

// Insert runs an INSERT … RETURNING id, guarded, and returns the id.
func (t *tx) Insert(query string, args ...any) (int64, error) {
	var id int64
	_, err := t.Guarded(func(r sqlstore.Scanner) error { return r.Scan(&id) }, query+" RETURNING id", args...)
	return id, err
}

// Savepoint runs fn so that its statements take effect together or not at
// all, even when the caller goes on with the transaction after an error
// (for aggregates written by several statements).
func (t *tx) Savepoint(fn func() error) error {
	if _, err := t.Exec("SAVEPOINT aggregate"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if t.ctx.Err() != nil {
			return err
		}
		if _, rbErr := t.tx.Exec(t.ctx, "ROLLBACK TO SAVEPOINT aggregate; RELEASE SAVEPOINT aggregate"); rbErr != nil {
			return errors.Join(err, fmt.Errorf("roll back to savepoint: %w", t.note(rbErr)))
		}
		return err
	}
	_, err := t.Exec("RELEASE SAVEPOINT aggregate")
	return err
}

func (t *tx) Failed(err error) error { return t.note(err) }

// dialect is PostgreSQL's spelling (see sqlstore.Dialect): INET and
// CIDR columns, arrays and JSONB, ids compared by = ANY(array).
var dialect = &sqlstore.Dialect{
	NoRows:        func(err error) bool { return errors.Is(err, pgx.ErrNoRows) },
	IsUnique:      func(err error) bool { return pgCode(err) == "23505" },
	IsForeignKey:  func(err error) bool { return pgCode(err) == "23503" },
	True:          "TRUE",
	False:         "FALSE",
	Int:           func(p string) string { return p + "::bigint" },
	IsNotDistinct: func(col string) string { return col + " IS NOT DISTINCT FROM ?::bigint" },
	EqualFold:     func(col string) string { return "lower(" + col + ") = lower(?)" }, // the unique index is on lower(email)
	HostOf:        func(col string) string { return "host(" + col + ")" },
	InIDs: func(ids []int64, args []any) (string, []any) {
		return "= ANY(?::bigint[])", append(args, ids)
	},
	IDArray:    func(ids []int64) (string, any, error) { return "= ANY(?::bigint[])", ids, nil },
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	Limit: func(limit int) any {
		if limit <= 0 {
			return nil // no limit
		}
		return limit
	},
	Addr: func(a netip.Addr) any {
		if !a.IsValid() {
			return nil
		}
		return a
	},
	ScanAddr: func(a *netip.Addr) any { return a },
	Prefix: func(p netip.Prefix) any {
		if !p.IsValid() {
			return nil
		}
		return p
	},
	ScanPrefix: func(p *netip.Prefix) any { return p },
	// pgx writes a nil slice as NULL, and list columns are NOT NULL.
	List: func(v any) (any, error) {
		if rv := reflect.ValueOf(v); rv.Len() == 0 {
			return reflect.MakeSlice(rv.Type(), 0, 0).Interface(), nil
		}
		return v, nil
	},
	ScanList: func(dest any) any { return dest },
	Bytes: func(b []byte) any {
		if b == nil {
			return []byte{}
		}
		return b
	},
}

// pgCode is the SQLSTATE of err, "" when it has none.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Row runs a query of one row; its Scan records an abort (see note).
func (t *tx) Row(query string, args ...any) sqlstore.Scanner {
	return notingRow{t: t, row: t.tx.QueryRow(t.ctx, rebind(query), args...)}
}

type notingRow struct {
	t   *tx
	row pgx.Row
}

func (r notingRow) Scan(dest ...any) error { return r.t.note(r.row.Scan(dest...)) }

// Query runs a query of many rows.
func (t *tx) Query(query string, args ...any) (sqlstore.Rows, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(t.ctx, rebind(query), args...)
	if err != nil {
		return nil, t.note(err)
	}
	return rows, nil
}

// Raced marks the transaction for running again when query finds no row
// in its snapshot: a unique violation with a row it cannot see is a write
// it raced with, which PostgreSQL reports as a serialisation failure only
// when the transaction had read through the same index.
func (t *tx) Raced(cause error, query string, args ...any) {
	var one int
	if t.Row(query, args...).Scan(&one) != nil && t.aborted == nil {
		t.aborted = cause
	}
}

// eventLock is the key of the transaction advisory lock LockEvents takes.
// An identity is drawn at the insert, not at the commit, so without it a
// transaction could commit event 115 after another committed 116, and a
// follower that had read up to 116 would never see 115. Holding the lock
// from the insert to the commit makes ids increase in commit order; the
// lock is taken late in an Update (events are written last), so writers
// wait on each other only for the end of their transactions.
const eventLock int64 = 0x73746167650001

func (t *tx) LockEvents() error {
	if t.eventLocked {
		return nil
	}
	if _, err := t.Exec("SELECT pg_advisory_xact_lock(?)", eventLock); err != nil {
		return err
	}
	t.eventLocked = true
	return nil
}

// Notify runs pg_notify, which PostgreSQL delivers when the transaction
// commits (and never when it rolls back, so a retried Update notifies once).
func (t *tx) Notify(channel, payload string) error {
	_, err := t.Exec("SELECT pg_notify(?, ?)", channel, payload)
	return err
}
