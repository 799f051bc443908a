// Package sqlstore holds the record code of the SQL stores once: every
// method of store.Tx written over a Conn (one transaction of one database)
// and a Dialect (what the SQL and the column types of that database spell
// differently). store/sqlite and store/postgres keep only what is theirs:
// opening the database, beginning, committing and retrying transactions,
// migrations, prepared statements, and their Conn and Dialect.
//
// Statements are written with SQLite's ? placeholders; a Conn that needs
// others (PostgreSQL's $N) rewrites them.
package sqlstore

import (
	"fmt"
	"net/netip"
	"time"

	"stagehand/internal/store"
)

// Conn is one transaction of one database, as the record code uses it.
// Every method runs with the context the transaction was started with and
// fails at once when it has ended.
type Conn interface {
	// Exec runs a statement that no constraint can fail, and returns how
	// many rows it changed.
	Exec(query string, args ...any) (int64, error)
	// Guarded runs a statement that may fail on a constraint so that the
	// transaction goes on after the failure (PostgreSQL aborts the whole
	// transaction at a failed statement, SQLite only the statement).
	// scan, when not nil, reads the statement's row (RETURNING);
	// otherwise Guarded returns how many rows the statement changed.
	Guarded(scan func(Scanner) error, query string, args ...any) (int64, error)
	// Insert runs an INSERT, guarded, and returns the new row's id.
	Insert(query string, args ...any) (int64, error)
	// Row runs a query of at most one row; its Scan reports the
	// Dialect's no-rows error when there is none.
	Row(query string, args ...any) Scanner
	// Query runs a query of many rows.
	Query(query string, args ...any) (Rows, error)
	// Savepoint runs fn so that its statements take effect together or
	// not at all, even when the caller goes on after an error.
	Savepoint(fn func() error) error
	// Failed is err as the caller is told it: the context's error first
	// when the context has ended (the driver's message then hides the
	// cause), and noted by a Conn that retries aborted transactions.
	Failed(err error) error
	// Raced is told of a unique violation of an insert whose conflicting
	// row the transaction does not see, found by query: a Conn whose
	// writers run concurrently marks the transaction to run again.
	Raced(cause error, query string, args ...any)
	// LockEvents is called before an event is added: a Conn whose
	// writers run concurrently makes event ids increase in commit order.
	LockEvents() error
	// Notify tells the other hosts' listeners payload on channel when the
	// transaction commits (store.Listener); a store with one daemon does
	// nothing.
	Notify(channel, payload string) error
}

// Scanner is one row.
type Scanner interface{ Scan(dest ...any) error }

// Rows is the result of Query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Tx implements store.Tx over a Conn in a Dialect: each accessor returns
// the records of one kind, written in the file of that name.
type Tx struct{ db *db }

var _ store.Tx = (*Tx)(nil)

// New returns the store.Tx of one transaction.
func New(c Conn, d *Dialect) *Tx { return &Tx{db: &db{c: c, d: d}} }

// Conn returns the transaction the Tx runs on.
func (t *Tx) Conn() Conn { return t.db.c }

func (t *Tx) Templates() store.Templates     { return templates{t.db} }
func (t *Tx) Layers() store.Layers           { return layers{t.db} }
func (t *Tx) Networks() store.Networks       { return networks{t.db} }
func (t *Tx) Allocations() store.Allocations { return allocations{t.db} }
func (t *Tx) Configs() store.Configs         { return configs{t.db} }
func (t *Tx) Ops() store.Ops                 { return ops{t.db} }
func (t *Tx) Archives() store.Archives       { return archives{t.db} }
func (t *Tx) Leases() store.Leases           { return leases{t.db} }
func (t *Tx) Events() store.Events           { return events{t.db} }
func (t *Tx) Hosts() store.Hosts             { return hosts{t.db} }
func (t *Tx) Orgs() store.Orgs               { return orgs{t.db} }
func (t *Tx) Workspaces() store.Workspaces   { return workspaces{t.db} }
func (t *Tx) Users() store.Users             { return users{t.db} }
func (t *Tx) Groups() store.Groups           { return groups{t.db} }
func (t *Tx) Memberships() store.Memberships { return memberships{t.db} }
func (t *Tx) Tokens() store.Tokens           { return tokens{t.db} }
func (t *Tx) Shares() store.Shares           { return shares{t.db} }
func (t *Tx) Quotas() store.Quotas           { return quotas{t.db} }
func (t *Tx) Viewers() store.Viewers         { return viewers{t.db} }
func (t *Tx) Objects() store.Objects         { return objects{t.db} }
func (t *Tx) Visible() store.Visible         { return visible{t.db} }
func (t *Tx) HostLayers() store.HostLayers   { return hostLayers{t.db} }
func (t *Tx) Work() store.Work               { return work{t.db} }
func (t *Tx) FenceVNIs() store.FenceVNIs     { return fenceVNIs{t.db} }

// The kinds of record, each a store interface of the same name.
type (
	templates   struct{ *db }
	layers      struct{ *db }
	networks    struct{ *db }
	allocations struct{ *db }
	configs     struct{ *db }
	ops         struct{ *db }
	archives    struct{ *db }
	leases      struct{ *db }
	events      struct{ *db }
	hosts       struct{ *db }
	orgs        struct{ *db }
	workspaces  struct{ *db }
	users       struct{ *db }
	groups      struct{ *db }
	memberships struct{ *db }
	tokens      struct{ *db }
	shares      struct{ *db }
	quotas      struct{ *db }
	viewers     struct{ *db }
	objects     struct{ *db }
	visible     struct{ *db }
	hostLayers  struct{ *db }
	work        struct{ *db }
	fenceVNIs   struct{ *db }
)

// db is the transaction and its dialect, as every kind of record uses them.
type db struct {
	c Conn
	d *Dialect
}

func (t *db) exec(query string, args ...any) (int64, error) { return t.c.Exec(query, args...) }

func (t *db) insert(query string, args ...any) (int64, error) { return t.c.Insert(query, args...) }

// guarded runs a statement that may fail on a constraint (see Conn.Guarded).
func (t *db) guarded(query string, args ...any) (int64, error) {
	return t.c.Guarded(nil, query, args...)
}

// changeOne runs an UPDATE or DELETE of one row, guarded, and reports
// whether the row existed.
func (t *db) changeOne(query string, args ...any) (bool, error) {
	n, err := t.c.Guarded(nil, query, args...)
	return n > 0, err
}

func (t *db) savepoint(fn func() error) error { return t.c.Savepoint(fn) }

// queryOne runs a query expected to return at most one row and scans it
// with scan. It reports the Dialect's no-rows error when there is none.
func queryOne[T any](t *db, scan func(Scanner) (T, error), query string, args ...any) (T, error) {
	return scan(t.c.Row(query, args...))
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](t *db, scan func(Scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := t.c.Query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, t.c.Failed(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, t.c.Failed(err)
	}
	return out, nil
}

// Dialect is what the SQL of one database spells differently.
type Dialect struct {
	// NoRows reports a query of one row that found none; IsUnique and
	// IsForeignKey the constraint failures callers are told about
	// (errdefs.ErrConflict).
	NoRows, IsUnique, IsForeignKey func(error) bool

	// True and False are the boolean literals; Int casts a parameter
	// compared with an integer where its type is not inferred ("?" or
	// "?::bigint"); BoolInt reads a boolean column as 0 or 1;
	// IsNotDistinct compares a nullable id column with a parameter that
	// may be NULL; EqualFold compares a text column with a parameter
	// without case; HostOf reads an address column as text.
	True, False   string
	Int           func(param string) string
	BoolInt       func(col string) string
	IsNotDistinct func(col string) string
	EqualFold     func(col string) string
	HostOf        func(col string) string
	// InIDs returns the condition "is one of ids" on a column (without
	// the column) and appends its arguments.
	InIDs func(ids []int64, args []any) (string, []any)
	// IDArray returns the condition "is one of ids" with the ids in one
	// parameter, for lists too long to spell one parameter an id.
	IDArray func(ids []int64) (string, any, error)
	// Limit is LIMIT's argument for limit; limit <= 0 means none.
	Limit func(limit int) any
	// SkipLocked ends a SELECT of rows to change so that it skips rows
	// other transactions have locked and locks the rest (" FOR UPDATE
	// SKIP LOCKED"); "" where writers run one at a time.
	SkipLocked string

	// Column encodings: an address or prefix (zero: NULL), a list (JSON
	// text, or an array), bytes; Scan* return the scan destination that
	// fills the value.
	Addr       func(netip.Addr) any
	ScanAddr   func(*netip.Addr) any
	Prefix     func(netip.Prefix) any
	ScanPrefix func(*netip.Prefix) any
	// List encodes a slice (nil and empty alike); ScanList decodes into
	// a pointer to a slice.
	List     func(v any) (any, error)
	ScanList func(dest any) any
	Bytes    func([]byte) any
}

// hotQueries are the statements worth preparing once per connection
// (store/sqlite prepares them; see hot).
var hotQueries = map[string]bool{}

// hot registers query as a hot statement and returns it. Only package
// variable declarations call it, so the set is complete before any store
// opens.
func hot(query string) string {
	hotQueries[query] = true
	return query
}

// HotQueries returns the statements of the hot path: the short lookups
// that authenticate and authorize every request. A store whose preparing
// costs may prepare them once.
func HotQueries() []string {
	qs := make([]string, 0, len(hotQueries))
	for q := range hotQueries {
		qs = append(qs, q)
	}
	return qs
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

// nullText stores "" as NULL, so that unique columns allow many "none".
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// blob stores nil bytes as empty ones in a NOT NULL bytes column (a
// driver writes nil as NULL).
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// orNil reads an empty list back as nil.
func orNil[T any](v []T) []T {
	if len(v) == 0 {
		return nil
	}
	return v
}

// list encodes a list column in the dialect.
func (t *db) list(what string, v any) (any, error) {
	enc, err := t.d.List(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return enc, nil
}
