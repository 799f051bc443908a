package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"stagehand/internal/store/sqlstore"
)

// Prepared statements of the hot path.
//
// database/sql prepares, runs and finalizes a statement on every call that
// is not made through a *sql.Stmt, and with SQLite preparing means parsing
// and planning the SQL text: for the short lookups that authenticate and
// authorize every API request that was most of their cost (and since
// SQLite 3.54 a fresh statement whose plan depends on a bound value is
// prepared a second time at its first step). The statements sqlstore
// registers as hot are therefore prepared once per *sql.DB at Open; a transaction
// runs them through sql.Tx.StmtContext, which reuses what SQLite compiled
// on the transaction's connection (preparing it there the first time).
// Every other statement is prepared per call as before: registering all of
// them would keep hundreds of compiled statements per connection for code
// that runs rarely.

// hotStatementRule: a hot statement has no JOIN and no ORDER BY. Since
// SQLite 3.54 the plan of a statement with a "col = ?" term in a join or
// in a query with ORDER BY depends on whether the bound integer is 0 or 1,
// so binding 1 after any other value (or the reverse) compiles the
// statement again at its next step: a prepared statement would be
// compiled anew on nearly every call as requests alternate between user,
// workspace or organization 1 (the first administrator, default/main)
// and the others. Read related rows with subqueries instead, and sort the
// few rows in Go. TestHotStatements checks the rule.
const hotStatementRule = "no JOIN, no ORDER BY"

// hotQueries holds the text of every hot statement (sqlstore.HotQueries).
var hotQueries = func() map[string]bool {
	m := map[string]bool{}
	for _, q := range sqlstore.HotQueries() {
		m[q] = true
	}
	return m
}()

// stmtCache is a DB's prepared hot statements by text. It is filled at
// Open and only read afterwards, so concurrent transactions share it
// without a lock.
type stmtCache map[string]*sql.Stmt

// prepareHot prepares every hot statement on db.
func prepareHot(ctx context.Context, db *sql.DB) (stmtCache, error) {
	c := make(stmtCache, len(hotQueries))
	for q := range hotQueries {
		s, err := db.PrepareContext(ctx, q)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		c[q] = s
	}
	return c, nil
}

func (c stmtCache) close() error {
	var errs []error
	for _, s := range c {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// stmt returns the transaction's handle on the hot statement query, or nil
// when query is not one. A transaction keeps the handles it asked for, so
// a statement run many times in one transaction is looked up once; they
// are released when the transaction ends.
func (t *tx) stmt(query string) *sql.Stmt {
	shared, ok := t.hot[query]
	if !ok {
		return nil
	}
	if s, ok := t.stmts[query]; ok {
		return s
	}
	s := t.tx.StmtContext(t.ctx, shared)
	if t.stmts == nil {
		t.stmts = make(map[string]*sql.Stmt, 4)
	}
	t.stmts[query] = s
	return s
}
