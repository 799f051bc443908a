package sqlstore

import (
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

const opCols = "id, kind, subject, created_files, frozen_files, remove_files, committed, started_at, host"

func (d *Dialect) scanOp(s Scanner) (store.Op, error) {
	var (
		o       store.Op
		started int64
	)
	if err := s.Scan(&o.ID, &o.Kind, &o.Subject, d.ScanList(&o.CreatedFiles), d.ScanList(&o.FrozenFiles), d.ScanList(&o.RemoveFiles), &o.Committed, &started, &o.Host); err != nil {
		return o, err
	}
	o.CreatedFiles, o.FrozenFiles, o.RemoveFiles = orNil(o.CreatedFiles), orNil(o.FrozenFiles), orNil(o.RemoveFiles)
	o.StartedAt = fromNanos(started)
	return o, nil
}

// opFiles encodes the three file lists of o.
func opFiles(t *db, o *store.Op) (created, frozen, remove any, err error) {
	if created, err = t.d.List(o.CreatedFiles); err != nil {
		return
	}
	if frozen, err = t.d.List(o.FrozenFiles); err != nil {
		return
	}
	remove, err = t.d.List(o.RemoveFiles)
	return
}

// Create records o and sets its ID (and StartedAt when zero).
func (t ops) Create(o *store.Op) error {
	created, frozen, remove, err := opFiles(t.db, o)
	if err != nil {
		return fmt.Errorf("%s %q: journal: %w", o.Kind, o.Subject, err)
	}
	started := stamp(o.StartedAt)
	id, err := t.insert(`INSERT INTO ops (kind, subject, created_files, frozen_files, remove_files, committed, started_at, host)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		o.Kind, o.Subject, created, frozen, remove, o.Committed, started.UnixNano(), o.Host)
	if err != nil {
		return fmt.Errorf("%s %q: journal: %w", o.Kind, o.Subject, err)
	}
	o.ID, o.StartedAt = id, started
	return nil
}

// Update writes every field of o but StartedAt, which is the time the
// operation was first recorded.
func (t ops) Update(o *store.Op) error {
	created, frozen, remove, err := opFiles(t.db, o)
	if err != nil {
		return fmt.Errorf("%s %q: journal: %w", o.Kind, o.Subject, err)
	}
	found, err := t.changeOne(`UPDATE ops SET kind = ?, subject = ?, created_files = ?, frozen_files = ?,
		remove_files = ?, committed = ? WHERE id = ?`,
		o.Kind, o.Subject, created, frozen, remove, o.Committed, o.ID)
	switch {
	case err != nil:
		return fmt.Errorf("%s %q: journal: %w", o.Kind, o.Subject, err)
	case !found:
		return errdefs.NotFound("operation %d not found", o.ID)
	}
	return nil
}

func (t ops) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM ops WHERE id = ?", id)
	switch {
	case err != nil:
		return fmt.Errorf("delete operation %d: %w", id, err)
	case !found:
		return errdefs.NotFound("operation %d not found", id)
	}
	return nil
}

func (t ops) List() ([]store.Op, error) {
	os, err := queryAll(t.db, t.d.scanOp, "SELECT "+opCols+" FROM ops ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	return os, nil
}
