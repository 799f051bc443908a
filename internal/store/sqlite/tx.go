package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"stagehand/internal/store/sqlstore"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// tx is one database/sql transaction, as sqlstore runs its statements on
// it (sqlstore.Conn). Every statement runs with the context the
// transaction was started with.
type tx struct {
	ctx context.Context
	tx  *sql.Tx
	// hot are the prepared hot statements of the DB tx runs on, stmts
	// the transaction's handles on those it used (stmts.go).
	hot   stmtCache
	stmts map[string]*sql.Stmt
}

var _ sqlstore.Conn = (*tx)(nil)

func (t *tx) Exec(query string, args ...any) (int64, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	res, err := t.tx.ExecContext(t.ctx, query, args...)
	if err != nil {
		return 0, ctxErr(t.ctx, err)
	}
	return res.RowsAffected()
}

// Guarded is Exec, or a query of one row with scan: SQLite fails the
// statement alone, and the transaction goes on.
func (t *tx) Guarded(scan func(sqlstore.Scanner) error, query string, args ...any) (int64, error) {
	if scan == nil {
		return t.Exec(query, args...)
	}
	return 0, scan(t.Row(query, args...))
}

func (t *tx) Insert(query string, args ...any) (int64, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	res, err := t.tx.ExecContext(t.ctx, query, args...)
	if err != nil {
		return 0, ctxErr(t.ctx, err)
	}
	return res.LastInsertId()
}

func (t *tx) Row(query string, args ...any) sqlstore.Scanner {
	if err := t.ctx.Err(); err != nil {
		return failedRow{err}
	}
	if s := t.stmt(query); s != nil {
		return ctxRow{t.ctx, s.QueryRowContext(t.ctx, args...)}
	}
	return ctxRow{t.ctx, t.tx.QueryRowContext(t.ctx, query, args...)}
}

func (t *tx) Query(query string, args ...any) (sqlstore.Rows, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	var (
		r   *sql.Rows
		err error
	)
	if s := t.stmt(query); s != nil {
		r, err = s.QueryContext(t.ctx, args...)
	} else {
		r, err = t.tx.QueryContext(t.ctx, query, args...)
	}
	if err != nil {
		return nil, ctxErr(t.ctx, err)
	}
	return rows{r}, nil
}

func (t *tx) Failed(err error) error { return ctxErr(t.ctx, err) }

// Raced does nothing: this process's writers run one at a time.
func (t *tx) Raced(error, string, ...any) {}

// LockEvents does nothing: writers run one at a time, so event ids
// increase in commit order.
func (t *tx) LockEvents() error { return nil }

// Notify does nothing: the one daemon publishes its own changes.
func (t *tx) Notify(string, string) error { return nil }

// ctxRow is a row whose Scan reports the context's error first.
type ctxRow struct {
	ctx context.Context
	row *sql.Row
}

func (r ctxRow) Scan(dest ...any) error { return ctxErr(r.ctx, r.row.Scan(dest...)) }

// failedRow is the row of a statement not run.
type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }

// rows adapts *sql.Rows to sqlstore.Rows.
type rows struct{ *sql.Rows }

func (r rows) Close() { _ = r.Rows.Close() }

// Savepoint runs fn so that its statements take effect together or not at
// all, even when the caller goes on with the transaction after an error
// (for aggregates written by several statements).
func (t *tx) Savepoint(fn func() error) error {
	if _, err := t.Exec("SAVEPOINT aggregate"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rbErr := t.Exec("ROLLBACK TO aggregate"); rbErr != nil {
			return errors.Join(err, fmt.Errorf("roll back to savepoint: %w", rbErr))
		}
		if _, rbErr := t.Exec("RELEASE aggregate"); rbErr != nil {
			return errors.Join(err, fmt.Errorf("release savepoint: %w", rbErr))
		}
		return err
	}
	_, err := t.Exec("RELEASE aggregate")
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

// dialect is SQLite's spelling (see sqlstore.Dialect): addresses and
// prefixes as text, lists as JSON text, ids compared by IN lists.
var dialect = &sqlstore.Dialect{
	NoRows:        func(err error) bool { return errors.Is(err, sql.ErrNoRows) },
	IsUnique:      isUnique,
	IsForeignKey:  isForeignKey,
	True:          "1",
	False:         "0",
	Int:           func(p string) string { return p },
	IsNotDistinct: func(col string) string { return col + " IS ?" },
	EqualFold:     func(col string) string { return col + " = ?" }, // the column's collation is NOCASE
	HostOf:        func(col string) string { return col },
	InIDs: func(ids []int64, args []any) (string, []any) {
		for _, id := range ids {
			args = append(args, id)
		}
		return "IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")", args
	},
	IDArray: func(ids []int64) (string, any, error) {
		list, err := json.Marshal(ids)
		return "IN (SELECT value FROM json_each(?))", string(list), err
	},
	Limit: func(limit int) any {
		if limit <= 0 {
			return -1 // no limit
		}
		return limit
	},
	Addr: func(a netip.Addr) any {
		if !a.IsValid() {
			return nil
		}
		return a.String()
	},
	ScanAddr: func(a *netip.Addr) any {
		return textScanner(func(s string) (err error) { *a, err = netip.ParseAddr(s); return })
	},
	Prefix: func(p netip.Prefix) any {
		if !p.IsValid() {
			return nil
		}
		return p.String()
	},
	ScanPrefix: func(p *netip.Prefix) any {
		return textScanner(func(s string) (err error) { *p, err = netip.ParsePrefix(s); return })
	},
	// A list is JSON text; nil and empty both become "[]".
	List: func(v any) (any, error) {
		if reflect.ValueOf(v).Len() == 0 {
			return "[]", nil
		}
		b, err := json.Marshal(v)
		return string(b), err
	},
	ScanList: func(dest any) any {
		return textScanner(func(s string) error { return json.Unmarshal([]byte(s), dest) })
	},
	Bytes: func(b []byte) any { return string(b) },
}

// textScanner decodes a text column with its func; NULL and "" leave the
// destination as it is (the zero value).
type textScanner func(string) error

func (f textScanner) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		return nil
	case string:
		if v == "" {
			return nil
		}
		return f(v)
	case []byte:
		if len(v) == 0 {
			return nil
		}
		return f(string(v))
	}
	return fmt.Errorf("text column: unexpected %T", src)
}

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
