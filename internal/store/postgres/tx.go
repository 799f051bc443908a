package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"stagehand/internal/store"
)

// tx implements store.Tx over one pgx transaction. Every statement runs with
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
	// eventLocked: the transaction holds the events' lock (AddEvent).
	eventLocked bool
}

var _ store.Tx = (*tx)(nil)

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

func (t *tx) exec(query string, args ...any) (pgconn.CommandTag, error) {
	if err := t.ctx.Err(); err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := t.tx.Exec(t.ctx, rebind(query), args...)
	return tag, t.note(err)
}

// queryOne runs a query expected to return at most one row and scans it
// with scan. It reports pgx.ErrNoRows when there is none.
func queryOne[T any](t *tx, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	var zero T
	if err := t.ctx.Err(); err != nil {
		return zero, err
	}
	v, err := scan(t.tx.QueryRow(t.ctx, rebind(query), args...))
	return v, t.note(err)
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](t *tx, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(t.ctx, rebind(query), args...)
	if err != nil {
		return nil, t.note(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, t.note(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, t.note(err)
	}
	return out, nil
}

// scalar reads one value.
func (t *tx) scalar(dest any, query string, args ...any) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	return t.note(t.tx.QueryRow(t.ctx, rebind(query), args...).Scan(dest))
}

// guarded runs one statement that may fail on a constraint between
// SAVEPOINT and RELEASE, the three in one round trip, and rolls back to
// the savepoint when it fails, so the transaction goes on. scan reads the
// statement's row (RETURNING); with a nil scan the statement is executed
// and its command tag returned.
func (t *tx) guarded(scan func(pgx.Row) error, query string, args ...any) (pgconn.CommandTag, error) {
	if err := t.ctx.Err(); err != nil {
		return pgconn.CommandTag{}, err
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
		return tag, nil
	}
	err = t.note(err)
	if t.ctx.Err() == nil {
		if _, rbErr := t.tx.Exec(t.ctx, "ROLLBACK TO SAVEPOINT guard; RELEASE SAVEPOINT guard"); rbErr != nil {
			return tag, errors.Join(err, fmt.Errorf("roll back to savepoint: %w", t.note(rbErr)))
		}
	}
	return tag, err
}

// insert runs an INSERT … RETURNING id, guarded, and returns the id.
func (t *tx) insert(query string, args ...any) (int64, error) {
	var id int64
	_, err := t.guarded(func(r pgx.Row) error { return r.Scan(&id) }, query+" RETURNING id", args...)
	return id, err
}

// changeOne runs an UPDATE or DELETE of one row, guarded, and reports
// whether the row existed.
func (t *tx) changeOne(query string, args ...any) (bool, error) {
	tag, err := t.guarded(nil, query, args...)
	return tag.RowsAffected() > 0, err
}

// savepoint runs fn so that its statements take effect together or not at
// all, even when the caller goes on with the transaction after an error
// (for aggregates written by several statements).
func (t *tx) savepoint(fn func() error) error {
	if _, err := t.exec("SAVEPOINT aggregate"); err != nil {
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
	_, err := t.exec("RELEASE SAVEPOINT aggregate")
	return err
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface{ Scan(dest ...any) error }

// The kinds of constraint failure callers are told about.
func pgCode(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

func isUnique(err error) bool     { c, _ := pgCode(err); return c == "23505" }
func isForeignKey(err error) bool { c, _ := pgCode(err); return c == "23503" }

// noRows reports a query that found nothing.
func noRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// Column encodings (those of store/sqlite, in PostgreSQL types).

// now is the time records are stamped with: UTC, no monotonic reading.
func now() time.Time { return time.Now().UTC() }

// stamp returns t, or now when t is zero.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return t
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// nullID stores the "none" id 0 as NULL, so that foreign keys hold.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// nullText stores "" as NULL, so that unique columns allow many "none".
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func addrArg(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a
}

func prefixArg(p netip.Prefix) any {
	if !p.IsValid() {
		return nil
	}
	return p
}

// nonNil makes a nil slice empty: pgx writes a nil slice as NULL, and list
// columns are NOT NULL.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

// orNil reads an empty list back as nil, as store/sqlite does.
func orNil[T any](v []T) []T {
	if len(v) == 0 {
		return nil
	}
	return v
}

// row runs a query of one row; its Scan records an abort (see note).
func (t *tx) row(query string, args ...any) scanner {
	return notingRow{t: t, row: t.tx.QueryRow(t.ctx, rebind(query), args...)}
}

type notingRow struct {
	t   *tx
	row pgx.Row
}

func (r notingRow) Scan(dest ...any) error { return r.t.note(r.row.Scan(dest...)) }

// query runs a query of many rows.
func (t *tx) query(query string, args ...any) (pgx.Rows, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(t.ctx, rebind(query), args...)
	return rows, t.note(err)
}

// visibleRow reports whether query finds a row in the transaction's
// snapshot.
func (t *tx) visibleRow(query string, args ...any) bool {
	var one int
	return t.row(query, args...).Scan(&one) == nil
}

// concurrentWrite marks the transaction for running again: a unique
// violation with a row it cannot see is a write it raced with, which
// PostgreSQL reports as a serialisation failure only when the transaction
// had read through the same index.
func (t *tx) concurrentWrite(err error) {
	if t.aborted == nil {
		t.aborted = err
	}
}
