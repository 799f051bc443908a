package postgres

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Archives, leases and the event log (schema version 3).

const archiveCols = "id, name, source, dir, manifest, size, created_at, workspace_id, owner_id"

func scanArchive(s scanner) (store.Archive, error) {
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

func (t *tx) CreateArchive(a *store.Archive) error {
	created := stamp(a.CreatedAt)
	id, err := t.insert(`INSERT INTO archives (name, source, dir, manifest, size, created_at, workspace_id, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		a.Name, a.Source, a.Dir, nonNil(a.Manifest), a.Size, created.UnixNano(), nullID(a.WorkspaceID), nullID(a.OwnerID))
	switch {
	case isUnique(err):
		return errdefs.Conflict("archive %q: already exists", a.Name)
	case isForeignKey(err):
		return errdefs.Conflict("archive %q: %s", a.Name, t.missingOwnership(a.WorkspaceID, a.OwnerID))
	case err != nil:
		return fmt.Errorf("create archive %q: %w", a.Name, err)
	}
	a.ID, a.CreatedAt = id, created
	return nil
}

func (t *tx) GetArchive(name string) (*store.Archive, error) {
	a, err := queryOne(t, scanArchive, "SELECT "+archiveCols+" FROM archives WHERE name = ?", name)
	switch {
	case noRows(err):
		return nil, errdefs.NotFound("archive %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get archive %q: %w", name, err)
	}
	return &a, nil
}

func (t *tx) ListArchives() ([]store.Archive, error) {
	as, err := queryAll(t, scanArchive, "SELECT "+archiveCols+" FROM archives ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list archives: %w", err)
	}
	return as, nil
}

func (t *tx) DeleteArchive(id int64) error {
	found, err := t.changeOne("DELETE FROM archives WHERE id = ?", id)
	switch {
	case err != nil:
		return fmt.Errorf("delete archive %d: %w", id, err)
	case !found:
		return errdefs.NotFound("archive %d not found", id)
	}
	return nil
}

const leaseCols = "id, config_id, archive_id, storage_expires, expired_at, deploy_lease, deploy_expires, undeploy_action, last_used"

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

func scanLease(s scanner) (store.Lease, error) {
	var (
		l                                        store.Lease
		configID, archiveID                      sql.NullInt64
		storage, expired, deploy, dexp, lastUsed int64
	)
	err := s.Scan(&l.ID, &configID, &archiveID, &storage, &expired, &deploy, &dexp, &l.UndeployAction, &lastUsed)
	l.ConfigID, l.ArchiveID = configID.Int64, archiveID.Int64
	l.StorageExpires, l.ExpiredAt = fromLeaseTime(storage), fromLeaseTime(expired)
	l.DeployLease, l.DeployExpires = time.Duration(deploy), fromLeaseTime(dexp)
	l.LastUsed = fromLeaseTime(lastUsed)
	return l, err
}

// PutLease writes the lease of one configuration or archive, replacing the
// one it had.
func (t *tx) PutLease(l *store.Lease) error {
	if (l.ConfigID == 0) == (l.ArchiveID == 0) {
		return errdefs.Invalid("lease: exactly one of configuration and archive must be set (got %d and %d)", l.ConfigID, l.ArchiveID)
	}
	args := []any{nullID(l.ConfigID), nullID(l.ArchiveID), leaseTime(l.StorageExpires), leaseTime(l.ExpiredAt),
		int64(l.DeployLease), leaseTime(l.DeployExpires), l.UndeployAction, leaseTime(l.LastUsed)}
	conflict := "config_id"
	if l.ArchiveID != 0 {
		conflict = "archive_id"
	}
	var id int64
	_, err := t.guarded(func(r pgx.Row) error { return r.Scan(&id) }, `INSERT INTO leases (config_id, archive_id, storage_expires, expired_at, deploy_lease, deploy_expires, undeploy_action, last_used)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (`+conflict+`) DO UPDATE SET storage_expires = excluded.storage_expires, expired_at = excluded.expired_at,
			deploy_lease = excluded.deploy_lease, deploy_expires = excluded.deploy_expires,
			undeploy_action = excluded.undeploy_action, last_used = excluded.last_used
		RETURNING id`, args...)
	switch {
	case isForeignKey(err):
		return errdefs.Conflict("lease: configuration %d or archive %d does not exist", l.ConfigID, l.ArchiveID)
	case err != nil:
		return fmt.Errorf("put lease: %w", err)
	}
	l.ID = id
	return nil
}

func (t *tx) LeaseOfConfig(configID int64) (*store.Lease, error) {
	return t.leaseWhere("config_id", configID, "configuration")
}

func (t *tx) LeaseOfArchive(archiveID int64) (*store.Lease, error) {
	return t.leaseWhere("archive_id", archiveID, "archive")
}

func (t *tx) leaseWhere(col string, id int64, what string) (*store.Lease, error) {
	l, err := queryOne(t, scanLease, "SELECT "+leaseCols+" FROM leases WHERE "+col+" = ?", id)
	switch {
	case noRows(err):
		return nil, errdefs.NotFound("%s %d has no lease", what, id)
	case err != nil:
		return nil, fmt.Errorf("get lease of %s %d: %w", what, id, err)
	}
	return &l, nil
}

func (t *tx) ListLeases() ([]store.Lease, error) {
	ls, err := queryAll(t, scanLease, "SELECT "+leaseCols+" FROM leases ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return ls, nil
}

const eventCols = "id, at, actor, action, object, subject, result, detail"

func scanEvent(s scanner) (store.Event, error) {
	var (
		e  store.Event
		at int64
	)
	err := s.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Object, &e.Subject, &e.Result, &e.Detail)
	e.At = fromNanos(at)
	return e, err
}

// eventLock is the key of the transaction advisory lock AddEvent takes.
// An identity is drawn at the insert, not at the commit, so without it a
// transaction could commit event 115 after another committed 116, and a
// follower that had read up to 116 would never see 115. Holding the lock
// from the insert to the commit makes ids increase in commit order; the
// lock is taken late in an Update (events are written last), so writers
// wait on each other only for the end of their transactions.
const eventLock int64 = 0x73746167650001

func (t *tx) AddEvent(e *store.Event) error {
	at := stamp(e.At)
	if !t.eventLocked {
		if _, err := t.exec("SELECT pg_advisory_xact_lock(?)", eventLock); err != nil {
			return fmt.Errorf("add event %s %q: %w", e.Action, e.Subject, err)
		}
		t.eventLocked = true
	}
	id, err := t.insert(`INSERT INTO events (at, actor, action, object, subject, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		at.UnixNano(), e.Actor, e.Action, e.Object, e.Subject, e.Result, e.Detail)
	if err != nil {
		return fmt.Errorf("add event %s %q: %w", e.Action, e.Subject, err)
	}
	e.ID, e.At = id, at
	return nil
}

func (t *tx) ListEvents(afterID int64, limit int) ([]store.Event, error) {
	es, err := queryAll(t, scanEvent, "SELECT "+eventCols+" FROM events WHERE id > ? ORDER BY id LIMIT ?", afterID, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return es, nil
}

func (t *tx) DeleteEventsBefore(before time.Time) (int64, error) {
	res, err := t.exec("DELETE FROM events WHERE at < ?", before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	return res.RowsAffected(), nil
}

// limitArg is LIMIT's argument: NULL (no limit) for limit <= 0.
func limitArg(limit int) any {
	if limit <= 0 {
		return nil
	}
	return limit
}
