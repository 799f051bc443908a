package sqlstore

import (
	"database/sql"
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

type snapshots struct{ *db }

const snapshotCols = "id, config_id, parent_id, name, created_at, with_state"

func scanSnapshot(s Scanner) (store.Snapshot, error) {
	var (
		sn      store.Snapshot
		parent  sql.NullInt64
		created int64
	)
	err := s.Scan(&sn.ID, &sn.ConfigID, &parent, &sn.Name, &created, &sn.WithState)
	sn.ParentID, sn.CreatedAt = parent.Int64, fromNanos(created)
	return sn, err
}

func (t snapshots) Create(s *store.Snapshot) error {
	if s.Name == "" {
		return errdefs.Invalid("snapshot: no name")
	}
	created := stamp(s.CreatedAt)
	err := t.savepoint(func() error {
		id, err := t.insert("INSERT INTO snapshots (config_id, parent_id, name, created_at, with_state) VALUES (?, ?, ?, ?, ?)",
			s.ConfigID, nullID(s.ParentID), s.Name, created.UnixNano(), s.WithState)
		switch {
		case t.d.IsUnique(err):
			return errdefs.Conflict("snapshot %q: already exists", s.Name)
		case t.d.IsForeignKey(err):
			return errdefs.Conflict("snapshot %q: configuration %d or parent snapshot %d does not exist", s.Name, s.ConfigID, s.ParentID)
		case err != nil:
			return err
		}
		for _, d := range s.Disks {
			_, err := t.guarded("INSERT INTO snapshot_disks (snapshot_id, vm_id, disk_index, layer_id) VALUES (?, ?, ?, ?)",
				id, d.VMID, d.Index, d.LayerID)
			switch {
			case t.d.IsUnique(err):
				return errdefs.Conflict("snapshot %q: VM %d disk %d named twice", s.Name, d.VMID, d.Index)
			case t.d.IsForeignKey(err):
				return errdefs.Conflict("snapshot %q: VM %d or layer %d does not exist", s.Name, d.VMID, d.LayerID)
			case err != nil:
				return err
			}
		}
		for _, st := range s.States {
			_, err := t.guarded("INSERT INTO snapshot_states (snapshot_id, vm_id, path) VALUES (?, ?, ?)", id, st.VMID, st.Path)
			switch {
			case t.d.IsUnique(err):
				return errdefs.Conflict("snapshot %q: state of VM %d: %q already recorded", s.Name, st.VMID, st.Path)
			case t.d.IsForeignKey(err):
				return errdefs.Conflict("snapshot %q: VM %d does not exist", s.Name, st.VMID)
			case err != nil:
				return err
			}
		}
		s.ID = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("create snapshot %q: %w", s.Name, err)
	}
	s.CreatedAt = created
	return nil
}

func (t snapshots) Get(configID int64, name string) (*store.Snapshot, error) {
	s, err := queryOne(t.db, scanSnapshot, "SELECT "+snapshotCols+" FROM snapshots WHERE config_id = ? AND name = ?", configID, name)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("snapshot %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get snapshot %q: %w", name, err)
	}
	if err := t.fill([]*store.Snapshot{&s}); err != nil {
		return nil, fmt.Errorf("get snapshot %q: %w", name, err)
	}
	return &s, nil
}

func (t snapshots) List(configID int64) ([]store.Snapshot, error) {
	q, args := "SELECT "+snapshotCols+" FROM snapshots ORDER BY id", []any(nil)
	if configID != 0 {
		q, args = "SELECT "+snapshotCols+" FROM snapshots WHERE config_id = ? ORDER BY id", []any{configID}
	}
	return t.list(q, args...)
}

func (t snapshots) WithLayer(layerID int64) ([]store.Snapshot, error) {
	return t.list("SELECT "+snapshotCols+" FROM snapshots WHERE id IN (SELECT snapshot_id FROM snapshot_disks WHERE layer_id = ?) ORDER BY id", layerID)
}

func (t snapshots) list(query string, args ...any) ([]store.Snapshot, error) {
	ss, err := queryAll(t.db, scanSnapshot, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	ptrs := make([]*store.Snapshot, len(ss))
	for i := range ss {
		ptrs[i] = &ss[i]
	}
	if err := t.fill(ptrs); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return ss, nil
}

// fill reads the disks and states of ss, two queries for all of them.
func (t snapshots) fill(ss []*store.Snapshot) error {
	if len(ss) == 0 {
		return nil
	}
	byID := make(map[int64]*store.Snapshot, len(ss))
	ids := make([]int64, len(ss))
	for i, s := range ss {
		byID[s.ID], ids[i] = s, s.ID
	}
	in, args := t.d.InIDs(ids, nil)
	type diskRow struct {
		snap int64
		d    store.SnapshotDisk
	}
	disks, err := queryAll(t.db, func(s Scanner) (diskRow, error) {
		var r diskRow
		err := s.Scan(&r.snap, &r.d.VMID, &r.d.Index, &r.d.LayerID)
		return r, err
	}, "SELECT snapshot_id, vm_id, disk_index, layer_id FROM snapshot_disks WHERE snapshot_id "+in+" ORDER BY vm_id, disk_index", args...)
	if err != nil {
		return err
	}
	for _, r := range disks {
		byID[r.snap].Disks = append(byID[r.snap].Disks, r.d)
	}
	type stateRow struct {
		snap int64
		st   store.SnapshotState
	}
	states, err := queryAll(t.db, func(s Scanner) (stateRow, error) {
		var r stateRow
		err := s.Scan(&r.snap, &r.st.VMID, &r.st.Path)
		return r, err
	}, "SELECT snapshot_id, vm_id, path FROM snapshot_states WHERE snapshot_id "+in+" ORDER BY vm_id", args...)
	if err != nil {
		return err
	}
	for _, r := range states {
		byID[r.snap].States = append(byID[r.snap].States, r.st)
	}
	return nil
}

func (t snapshots) SetParent(id, parentID int64) error {
	found, err := t.changeOne("UPDATE snapshots SET parent_id = ? WHERE id = ?", nullID(parentID), id)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("snapshot %d: parent snapshot %d does not exist", id, parentID)
	case err != nil:
		return fmt.Errorf("set parent of snapshot %d: %w", id, err)
	case !found:
		return errdefs.NotFound("snapshot %d not found", id)
	}
	return nil
}

func (t snapshots) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM snapshots WHERE id = ?", id)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("snapshot %d has child snapshots", id)
	case err != nil:
		return fmt.Errorf("delete snapshot %d: %w", id, err)
	case !found:
		return errdefs.NotFound("snapshot %d not found", id)
	}
	return nil
}

// Snapshots returns the configurations' snapshots (store.Snapshots).
func (t *Tx) Snapshots() store.Snapshots { return snapshots{t.db} }
