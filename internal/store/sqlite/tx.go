package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"stagehand/internal/store"
)

// tx implements store.Tx over one database/sql transaction. Every statement
// runs with the context the transaction was started with.
type tx struct {
	ctx context.Context
	tx  *sql.Tx
	// hot are the prepared hot statements of the DB tx runs on, stmts
	// the transaction's handles on those it used (stmts.go).
	hot   stmtCache
	stmts map[string]*sql.Stmt
}

var _ store.Tx = (*tx)(nil)

func (t *tx) exec(query string, args ...any) (sql.Result, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	res, err := t.tx.ExecContext(t.ctx, query, args...)
	return res, ctxErr(t.ctx, err)
}

func (t *tx) query(query string, args ...any) (*sql.Rows, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	var (
		rows *sql.Rows
		err  error
	)
	if s := t.stmt(query); s != nil {
		rows, err = s.QueryContext(t.ctx, args...)
	} else {
		rows, err = t.tx.QueryContext(t.ctx, query, args...)
	}
	return rows, ctxErr(t.ctx, err)
}

// queryOne runs a query expected to return at most one row and scans it
// with scan. It reports sql.ErrNoRows when there is none.
func queryOne[T any](t *tx, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	var zero T
	if err := t.ctx.Err(); err != nil {
		return zero, err
	}
	var row *sql.Row
	if s := t.stmt(query); s != nil {
		row = s.QueryRowContext(t.ctx, args...)
	} else {
		row = t.tx.QueryRowContext(t.ctx, query, args...)
	}
	v, err := scan(row)
	return v, ctxErr(t.ctx, err)
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](t *tx, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := t.query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, ctxErr(t.ctx, err)
	}
	return out, nil
}

// insert runs an INSERT and returns the new row's id.
func (t *tx) insert(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// changeOne runs an UPDATE or DELETE of one row by id and reports whether
// the row existed.
func (t *tx) changeOne(query string, args ...any) (bool, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// savepoint runs fn so that its statements take effect together or not at
// all, even when the caller goes on with the transaction after an error
// (for aggregates written by several statements).
func (t *tx) savepoint(fn func() error) error {
	if _, err := t.exec("SAVEPOINT aggregate"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rbErr := t.exec("ROLLBACK TO aggregate"); rbErr != nil {
			return errors.Join(err, fmt.Errorf("roll back to savepoint: %w", rbErr))
		}
		if _, rbErr := t.exec("RELEASE aggregate"); rbErr != nil {
			return errors.Join(err, fmt.Errorf("release savepoint: %w", rbErr))
		}
		return err
	}
	_, err := t.exec("RELEASE aggregate")
	return err
}

// ctxErr prefers the context's error: once the context ends, database/sql
// rolls the transaction back and later calls fail with a message about a
// finished transaction, which hides the cause.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// The kinds of constraint failure callers are told about.
func isUnique(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// isForeignKey also recognises SQLITE_CONSTRAINT_TRIGGER: SQLite reports
// an ON DELETE RESTRICT violation through the trigger that implements it.
func isForeignKey(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY ||
		e.Code() == sqlite3.SQLITE_CONSTRAINT_TRIGGER && strings.Contains(e.Error(), "FOREIGN KEY")
}

// Column encodings.

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

func addrText(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

func parseAddr(s sql.NullString) (netip.Addr, error) {
	if !s.Valid || s.String == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(s.String)
}

func prefixText(p netip.Prefix) any {
	if !p.IsValid() {
		return nil
	}
	return p.String()
}

func parsePrefix(s sql.NullString) (netip.Prefix, error) {
	if !s.Valid || s.String == "" {
		return netip.Prefix{}, nil
	}
	return netip.ParsePrefix(s.String)
}

// jsonList encodes a list column; nil and empty both become "[]".
func jsonList[T any](v []T) (string, error) {
	if len(v) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// parseList decodes a list column; an empty list reads back as nil.
func parseList[T any](s string) ([]T, error) {
	var v []T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}
