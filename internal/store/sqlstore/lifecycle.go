package sqlstore

import (
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Archives, leases and the event log (schema version 3).

const archiveCols = "id, name, source, dir, manifest, size, created_at, workspace_id, owner_id"

func scanArchive(s Scanner) (store.Archive, error) {
	var (
		a       store.Archive
		created int64
		ws, own sql.NullInt64
	)
	err := s.Scan(&a.ID, &a.Name, &a.Source, &a.Dir, &a.Manifest, &a.Size, &created, &ws, &own)
	a.CreatedAt = fromNanos(created)
	a.WorkspaceID, a.OwnerID = ws.Int64, own.Int64
	return a, err
}

func (t archives) Create(a *store.Archive) error {
	created := stamp(a.CreatedAt)
	id, err := t.insert(`INSERT INTO archives (name, source, dir, manifest, size, created_at, workspace_id, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		a.Name, a.Source, a.Dir, t.d.Bytes(a.Manifest), a.Size, created.UnixNano(), nullID(a.WorkspaceID), nullID(a.OwnerID))
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("archive %q: already exists", a.Name)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("archive %q: %s", a.Name, missingOwnership(t.db, a.WorkspaceID, a.OwnerID))
	case err != nil:
		return fmt.Errorf("create archive %q: %w", a.Name, err)
	}
	a.ID, a.CreatedAt = id, created
	return nil
}

func (t archives) Get(name string) (*store.Archive, error) {
	a, err := queryOne(t.db, scanArchive, "SELECT "+archiveCols+" FROM archives WHERE name = ?", name)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("archive %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get archive %q: %w", name, err)
	}
	return &a, nil
}

func (t archives) List() ([]store.Archive, error) {
	as, err := queryAll(t.db, scanArchive, "SELECT "+archiveCols+" FROM archives ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list archives: %w", err)
	}
	return as, nil
}

func (t archives) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM archives WHERE id = ?", id)
	switch {
	case err != nil:
		return fmt.Errorf("delete archive %d: %w", id, err)
	case !found:
		return errdefs.NotFound("archive %d not found", id)
	}
	return nil
}

const leaseCols = "id, config_id, archive_id, storage_expires, expired_at, deploy_lease, deploy_expires, undeploy_action, last_used, ladder_step, ladder_expires, ladder_at"

// Lease times are stored as unix nanoseconds with 0 for the zero time.
func leaseTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromLeaseTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return fromNanos(n)
}

func scanLease(s Scanner) (store.Lease, error) {
	var (
		l                                        store.Lease
		configID, archiveID                      sql.NullInt64
		storage, expired, deploy, dexp, lastUsed int64
		ladderExpires, ladderAt                  int64
	)
	err := s.Scan(&l.ID, &configID, &archiveID, &storage, &expired, &deploy, &dexp, &l.UndeployAction, &lastUsed,
		&l.LadderStep, &ladderExpires, &ladderAt)
	l.LadderExpires, l.LadderAt = fromLeaseTime(ladderExpires), fromLeaseTime(ladderAt)
	l.ConfigID, l.ArchiveID = configID.Int64, archiveID.Int64
	l.StorageExpires, l.ExpiredAt = fromLeaseTime(storage), fromLeaseTime(expired)
	l.DeployLease, l.DeployExpires = time.Duration(deploy), fromLeaseTime(dexp)
	l.LastUsed = fromLeaseTime(lastUsed)
	return l, err
}

// Put writes the lease of one configuration or archive, replacing the
// one it had.
func (t leases) Put(l *store.Lease) error {
	if (l.ConfigID == 0) == (l.ArchiveID == 0) {
		return errdefs.Invalid("lease: exactly one of configuration and archive must be set (got %d and %d)", l.ConfigID, l.ArchiveID)
	}
	args := []any{nullID(l.ConfigID), nullID(l.ArchiveID), leaseTime(l.StorageExpires), leaseTime(l.ExpiredAt),
		int64(l.DeployLease), leaseTime(l.DeployExpires), l.UndeployAction, leaseTime(l.LastUsed),
		l.LadderStep, leaseTime(l.LadderExpires), leaseTime(l.LadderAt)}
	conflict := "config_id"
	if l.ArchiveID != 0 {
		conflict = "archive_id"
	}
	var id int64
	_, err := t.c.Guarded(func(r Scanner) error { return r.Scan(&id) }, `INSERT INTO leases (config_id, archive_id, storage_expires, expired_at, deploy_lease, deploy_expires, undeploy_action, last_used,
			ladder_step, ladder_expires, ladder_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (`+conflict+`) DO UPDATE SET storage_expires = excluded.storage_expires, expired_at = excluded.expired_at,
			deploy_lease = excluded.deploy_lease, deploy_expires = excluded.deploy_expires,
			undeploy_action = excluded.undeploy_action, last_used = excluded.last_used,
			ladder_step = excluded.ladder_step, ladder_expires = excluded.ladder_expires, ladder_at = excluded.ladder_at
		RETURNING id`, args...)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("lease: configuration %d or archive %d does not exist", l.ConfigID, l.ArchiveID)
	case err != nil:
		return fmt.Errorf("put lease: %w", err)
	}
	l.ID = id
	return nil
}

func (t leases) OfConfig(configID int64) (*store.Lease, error) {
	return leaseWhere(t.db, "config_id", configID, "configuration")
}

func (t leases) OfArchive(archiveID int64) (*store.Lease, error) {
	return leaseWhere(t.db, "archive_id", archiveID, "archive")
}

func leaseWhere(t *db, col string, id int64, what string) (*store.Lease, error) {
	l, err := queryOne(t, scanLease, "SELECT "+leaseCols+" FROM leases WHERE "+col+" = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("%s %d has no lease", what, id)
	case err != nil:
		return nil, fmt.Errorf("get lease of %s %d: %w", what, id, err)
	}
	return &l, nil
}

func (t leases) List() ([]store.Lease, error) {
	ls, err := queryAll(t.db, scanLease, "SELECT "+leaseCols+" FROM leases ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return ls, nil
}

const eventCols = "id, at, actor, action, object, subject, result, detail"

func scanEvent(s Scanner) (store.Event, error) {
	var (
		e  store.Event
		at int64
	)
	err := s.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Object, &e.Subject, &e.Result, &e.Detail)
	e.At = fromNanos(at)
	return e, err
}

func (t events) Add(e *store.Event) error {
	if err := t.c.LockEvents(); err != nil {
		return fmt.Errorf("add event %s %q: %w", e.Action, e.Subject, err)
	}
	at := stamp(e.At)
	id, err := t.insert(`INSERT INTO events (at, actor, action, object, subject, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		at.UnixNano(), e.Actor, e.Action, e.Object, e.Subject, e.Result, e.Detail)
	if err != nil {
		return fmt.Errorf("add event %s %q: %w", e.Action, e.Subject, err)
	}
	if err := t.c.Notify(store.EventsChannel, strconv.FormatInt(id, 10)); err != nil {
		return fmt.Errorf("add event %s %q: notify: %w", e.Action, e.Subject, err)
	}
	e.ID, e.At = id, at
	return nil
}

func (t events) List(afterID int64, limit int) ([]store.Event, error) {
	es, err := queryAll(t.db, scanEvent, "SELECT "+eventCols+" FROM events WHERE id > ? ORDER BY id LIMIT ?", afterID, t.d.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return es, nil
}

// EventsOfQuery is the query of Events.Of, answered from the index
// events_object (object, subject, id) in id order backwards; exported for
// the stores' query plan tests.
const EventsOfQuery = "SELECT " + eventCols + " FROM events WHERE object = ? AND subject = ? AND id < ? ORDER BY id DESC LIMIT ?"

func (t events) Of(object, subject string, beforeID int64, limit int) ([]store.Event, error) {
	if beforeID <= 0 {
		beforeID = math.MaxInt64
	}
	es, err := queryAll(t.db, scanEvent, EventsOfQuery, object, subject, beforeID, t.d.Limit(limit))
	if err != nil {
		return nil, fmt.Errorf("events of %s %q: %w", object, subject, err)
	}
	return es, nil
}

func (t events) Newest() (int64, error) {
	id, err := queryOne(t.db, func(r Scanner) (int64, error) {
		var id int64
		return id, r.Scan(&id)
	}, "SELECT COALESCE(MAX(id), 0) FROM events")
	if err != nil {
		return 0, fmt.Errorf("newest event: %w", err)
	}
	return id, nil
}

func (t events) DeleteBefore(before time.Time) (int64, error) {
	n, err := t.exec("DELETE FROM events WHERE at < ?", before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	return n, nil
}
