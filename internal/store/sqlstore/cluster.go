package sqlstore

import (
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Records of many hosts: host_layers, work, fence_vnis (store/cluster.go).

func (t hostLayers) Add(hostID, layerID int64) error {
	_, err := t.guarded("INSERT INTO host_layers (host_id, layer_id) VALUES (?, ?) ON CONFLICT DO NOTHING", hostID, layerID)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("host %d holds layer %d: no such host or layer", hostID, layerID)
	case err != nil:
		return fmt.Errorf("host %d holds layer %d: %w", hostID, layerID, err)
	}
	return nil
}

func (t hostLayers) Remove(hostID, layerID int64) error {
	if _, err := t.exec("DELETE FROM host_layers WHERE host_id = ? AND layer_id = ?", hostID, layerID); err != nil {
		return fmt.Errorf("host %d no longer holds layer %d: %w", hostID, layerID, err)
	}
	return nil
}

func (t hostLayers) OfHost(hostID int64) ([]int64, error) {
	ids, err := queryAll(t.db, func(s Scanner) (int64, error) {
		var id int64
		return id, s.Scan(&id)
	}, "SELECT layer_id FROM host_layers WHERE host_id = ? ORDER BY layer_id", hostID)
	if err != nil {
		return nil, fmt.Errorf("layers of host %d: %w", hostID, err)
	}
	return ids, nil
}

func (t hostLayers) Holders(layerID int64) ([]store.Host, error) {
	hs, err := queryAll(t.db, scanHost, "SELECT "+hostCols+" FROM hosts WHERE id IN (SELECT host_id FROM host_layers WHERE layer_id = ?) ORDER BY id", layerID)
	if err != nil {
		return nil, fmt.Errorf("hosts holding layer %d: %w", layerID, err)
	}
	return hs, nil
}

const workCols = "id, host_id, kind, subject, payload, state, attempts, error, created_at, claimed_at, done_at"

func scanWork(s Scanner) (store.WorkItem, error) {
	var (
		w                      store.WorkItem
		created, claimed, done int64
	)
	err := s.Scan(&w.ID, &w.HostID, &w.Kind, &w.Subject, &w.Payload, &w.State, &w.Attempts, &w.Error, &created, &claimed, &done)
	w.Payload, w.CreatedAt = orNil(w.Payload), fromNanos(created)
	if claimed != 0 {
		w.ClaimedAt = fromNanos(claimed)
	}
	if done != 0 {
		w.DoneAt = fromNanos(done)
	}
	return w, err
}

func (t work) Enqueue(w *store.WorkItem) error {
	if w.Kind == "" {
		return errdefs.Invalid("work item for host %d: no kind", w.HostID)
	}
	created := stamp(w.CreatedAt)
	id, err := t.insert(`INSERT INTO work (host_id, kind, subject, payload, state, attempts, error, created_at, claimed_at, done_at)
		VALUES (?, ?, ?, ?, 'queued', 0, '', ?, 0, 0)`, w.HostID, w.Kind, w.Subject, blob(w.Payload), created.UnixNano())
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("work %s %q: host %d does not exist", w.Kind, w.Subject, w.HostID)
	case err != nil:
		return fmt.Errorf("enqueue work %s %q: %w", w.Kind, w.Subject, err)
	}
	if err := t.c.Notify(store.WorkChannel(w.HostID), strconv.FormatInt(id, 10)); err != nil {
		return fmt.Errorf("enqueue work %s %q: notify: %w", w.Kind, w.Subject, err)
	}
	w.ID, w.State, w.CreatedAt, w.Attempts, w.Error = id, store.WorkQueued, created, 0, ""
	w.ClaimedAt, w.DoneAt = time.Time{}, time.Time{}
	return nil
}

// Claim takes the oldest queued item in one statement. On PostgreSQL the
// inner SELECT skips the rows other transactions hold, so two workers of
// one host claim different items and neither waits for the other; SQLite
// runs one writer at a time, which claims in order.
func (t work) Claim(hostID int64, at time.Time) (*store.WorkItem, error) {
	w, err := queryOne(t.db, scanWork, `UPDATE work SET state = 'claimed', claimed_at = ?, attempts = attempts + 1
		WHERE id = (SELECT id FROM work WHERE host_id = ? AND state = 'queued' ORDER BY id LIMIT 1`+t.d.SkipLocked+`)
		RETURNING `+workCols, at.UnixNano(), hostID)
	switch {
	case t.d.NoRows(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("claim work of host %d: %w", hostID, err)
	}
	return &w, nil
}

func (t work) Finish(id int64, errText string) error {
	state := store.WorkDone
	if errText != "" {
		state = store.WorkFailed
	}
	found, err := t.changeOne("UPDATE work SET state = ?, error = ?, done_at = ? WHERE id = ? AND state = 'claimed'",
		state, errText, now().UnixNano(), id)
	if err != nil {
		return fmt.Errorf("finish work %d: %w", id, err)
	}
	if !found {
		w, err := t.Get(id)
		if err != nil {
			return err
		}
		return errdefs.Conflict("finish work %d %s %q: it is %s, not claimed", id, w.Kind, w.Subject, w.State)
	}
	return nil
}

func (t work) Requeue(hostID int64, claimedBefore time.Time) (int64, error) {
	n, err := t.exec("UPDATE work SET state = 'queued', claimed_at = 0 WHERE host_id = ? AND state = 'claimed' AND claimed_at < ?",
		hostID, claimedBefore.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("requeue work of host %d: %w", hostID, err)
	}
	return n, nil
}

func (t work) Get(id int64) (*store.WorkItem, error) {
	w, err := queryOne(t.db, scanWork, "SELECT "+workCols+" FROM work WHERE id = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("work %d not found", id)
	case err != nil:
		return nil, fmt.Errorf("get work %d: %w", id, err)
	}
	return &w, nil
}

func (t work) OfHost(hostID int64) ([]store.WorkItem, error) {
	ws, err := queryAll(t.db, scanWork, "SELECT "+workCols+" FROM work WHERE host_id = ? ORDER BY id", hostID)
	if err != nil {
		return nil, fmt.Errorf("work of host %d: %w", hostID, err)
	}
	return ws, nil
}

func (t work) OfSubject(subject string) ([]store.WorkItem, error) {
	ws, err := queryAll(t.db, scanWork, "SELECT "+workCols+" FROM work WHERE subject = ? ORDER BY id", subject)
	if err != nil {
		return nil, fmt.Errorf("work on %q: %w", subject, err)
	}
	return ws, nil
}

// lowestFreeVNI is 1 when free, else the lowest VNI above a taken one
// that is itself free; NULL when every VNI is taken.
const lowestFreeVNI = `SELECT COALESCE(
	(SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM fence_vnis WHERE vni = 1)),
	(SELECT min(f.vni) + 1 FROM fence_vnis f
		WHERE f.vni < 16777215 AND NOT EXISTS (SELECT 1 FROM fence_vnis g WHERE g.vni = f.vni + 1)))`

func (t fenceVNIs) Allocate(configID, networkID int64) (int, error) {
	var vni int
	err := t.c.Row("SELECT vni FROM fence_vnis WHERE config_id = ? AND network_id = ?", configID, networkID).Scan(&vni)
	switch {
	case err == nil:
		return vni, nil
	case !t.d.NoRows(err):
		return 0, fmt.Errorf("VNI of configuration %d network %d: %w", configID, networkID, err)
	}
	var free sql.NullInt64
	if err := t.c.Row(lowestFreeVNI).Scan(&free); err != nil {
		return 0, fmt.Errorf("VNI of configuration %d network %d: %w", configID, networkID, err)
	}
	if !free.Valid {
		return 0, errdefs.Unavailable("VNI of configuration %d network %d: all %d VNIs are taken", configID, networkID, store.MaxVNI)
	}
	_, err = t.insert("INSERT INTO fence_vnis (config_id, network_id, vni) VALUES (?, ?, ?)", configID, networkID, free.Int64)
	switch {
	case t.d.IsUnique(err):
		// Taken by a writer this transaction cannot see (PostgreSQL):
		// serialised, it would have picked another, so it runs again.
		t.c.Raced(fmt.Errorf("VNI %d: allocated by a concurrent transaction", free.Int64),
			"SELECT 1 FROM fence_vnis WHERE vni = ? OR (config_id = ? AND network_id = ?)", free.Int64, configID, networkID)
		return 0, errdefs.Conflict("VNI %d of configuration %d network %d: already allocated", free.Int64, configID, networkID)
	case t.d.IsForeignKey(err):
		return 0, errdefs.Conflict("VNI: configuration %d or network %d does not exist", configID, networkID)
	case err != nil:
		return 0, fmt.Errorf("VNI of configuration %d network %d: %w", configID, networkID, err)
	}
	return int(free.Int64), nil
}

func (t fenceVNIs) OfConfig(configID int64) ([]store.FenceVNI, error) {
	vs, err := queryAll(t.db, func(s Scanner) (store.FenceVNI, error) {
		var v store.FenceVNI
		return v, s.Scan(&v.ID, &v.ConfigID, &v.NetworkID, &v.VNI)
	}, "SELECT id, config_id, network_id, vni FROM fence_vnis WHERE config_id = ? ORDER BY network_id", configID)
	if err != nil {
		return nil, fmt.Errorf("VNIs of configuration %d: %w", configID, err)
	}
	return vs, nil
}

func (t fenceVNIs) Free(configID int64) (int64, error) {
	n, err := t.exec("DELETE FROM fence_vnis WHERE config_id = ?", configID)
	if err != nil {
		return 0, fmt.Errorf("free VNIs of configuration %d: %w", configID, err)
	}
	return n, nil
}
