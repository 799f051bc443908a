package sqlstore

import (
	"database/sql"
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

const templateCols = "id, name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at, workspace_id, owner_id, user_data, no_seed, kernel_sha256, kernel_size, initrd_sha256, initrd_size"

func (d *Dialect) scanTemplate(s Scanner) (store.Template, error) {
	var (
		t       store.Template
		created int64
		ws, own sql.NullInt64
	)
	if err := s.Scan(&t.ID, &t.Name, &t.Description, &t.CPUs, &t.MemoryMiB, d.ScanList(&t.LayerIDs), &t.Kernel, &t.Initrd, &t.Cmdline, &created, &ws, &own, &t.UserData, &t.NoSeed, &t.KernelSHA256, &t.KernelSize, &t.InitrdSHA256, &t.InitrdSize); err != nil {
		return t, err
	}
	t.WorkspaceID, t.OwnerID = ws.Int64, own.Int64
	t.LayerIDs, t.CreatedAt = orNil(t.LayerIDs), fromNanos(created)
	if len(t.UserData) == 0 {
		t.UserData = nil // none, whichever way the driver reads an empty BLOB
	}
	return t, nil
}

func (t templates) Create(tm *store.Template) error {
	ids, err := t.list(fmt.Sprintf("template %q", tm.Name), tm.LayerIDs)
	if err != nil {
		return err
	}
	created := stamp(tm.CreatedAt)
	id, err := t.insert(`INSERT INTO templates (name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at, workspace_id, owner_id, user_data, no_seed, kernel_sha256, kernel_size, initrd_sha256, initrd_size)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tm.Name, tm.Description, tm.CPUs, tm.MemoryMiB, ids, tm.Kernel, tm.Initrd, tm.Cmdline, created.UnixNano(), nullID(tm.WorkspaceID), nullID(tm.OwnerID), orEmpty(tm.UserData), tm.NoSeed, tm.KernelSHA256, tm.KernelSize, tm.InitrdSHA256, tm.InitrdSize)
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("template %q: already exists", tm.Name)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("template %q: %s", tm.Name, missingOwnership(t.db, tm.WorkspaceID, tm.OwnerID))
	case err != nil:
		return fmt.Errorf("create template %q: %w", tm.Name, err)
	}
	tm.ID, tm.CreatedAt = id, created
	return nil
}

func (t templates) Get(name string) (*store.Template, error) {
	tm, err := queryOne(t.db, t.d.scanTemplate, "SELECT "+templateCols+" FROM templates WHERE name = ?", name)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("template %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get template %q: %w", name, err)
	}
	return &tm, nil
}

func (t templates) GetByID(id int64) (*store.Template, error) {
	tm, err := queryOne(t.db, t.d.scanTemplate, "SELECT "+templateCols+" FROM templates WHERE id = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("template %d not found", id)
	case err != nil:
		return nil, fmt.Errorf("get template %d: %w", id, err)
	}
	return &tm, nil
}

func (t templates) List() ([]store.Template, error) {
	ts, err := queryAll(t.db, t.d.scanTemplate, "SELECT "+templateCols+" FROM templates ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	return ts, nil
}

func (t templates) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM templates WHERE id = ?", id)
	switch {
	case err != nil:
		return fmt.Errorf("delete template %d: %w", id, err)
	case !found:
		return errdefs.NotFound("template %d not found", id)
	}
	return nil
}

// orEmpty turns nil into an empty slice: the column is NOT NULL, and a nil
// []byte is written as NULL.
func orEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
