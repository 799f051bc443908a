package sqlstore

import (
	"database/sql"
	"fmt"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

const layerCols = "id, path, parent_id, frozen, template_id, virtual_size, sha256, size, created_at, shortcut_of, shortcut_bottom, shortcut_layers"

func scanLayer(s Scanner) (store.Layer, error) {
	var (
		l                  store.Layer
		parent, templateID sql.NullInt64
		created            int64
	)
	if err := s.Scan(&l.ID, &l.Path, &parent, &l.Frozen, &templateID, &l.VirtualSize, &l.SHA256, &l.Size, &created, &l.ShortcutOf, &l.ShortcutBottom, &l.ShortcutLayers); err != nil {
		return l, err
	}
	l.ParentID, l.TemplateID, l.CreatedAt = parent.Int64, templateID.Int64, fromNanos(created)
	return l, nil
}

func (t layers) Create(l *store.Layer) error {
	created := stamp(l.CreatedAt)
	id, err := t.insert(`INSERT INTO layers (path, parent_id, frozen, template_id, virtual_size, sha256, size, created_at, shortcut_of, shortcut_bottom, shortcut_layers)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.Path, nullID(l.ParentID), l.Frozen, nullID(l.TemplateID), l.VirtualSize, l.SHA256, l.Size, created.UnixNano(),
		l.ShortcutOf, l.ShortcutBottom, l.ShortcutLayers)
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("layer %q: already exists", l.Path)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("layer %q: parent layer %d does not exist", l.Path, l.ParentID)
	case err != nil:
		return fmt.Errorf("create layer %q: %w", l.Path, err)
	}
	l.ID, l.CreatedAt = id, created
	return nil
}

func (t layers) Get(id int64) (*store.Layer, error) {
	l, err := queryOne(t.db, scanLayer, "SELECT "+layerCols+" FROM layers WHERE id = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("layer %d not found", id)
	case err != nil:
		return nil, fmt.Errorf("get layer %d: %w", id, err)
	}
	return &l, nil
}

func (t layers) List() ([]store.Layer, error) {
	ls, err := queryAll(t.db, scanLayer, "SELECT "+layerCols+" FROM layers ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	return ls, nil
}

func (t layers) Update(l *store.Layer) error {
	found, err := t.changeOne("UPDATE layers SET frozen = ?, template_id = ?, virtual_size = ?, sha256 = ?, size = ? WHERE id = ?",
		l.Frozen, nullID(l.TemplateID), l.VirtualSize, l.SHA256, l.Size, l.ID)
	switch {
	case err != nil:
		return fmt.Errorf("update layer %d: %w", l.ID, err)
	case !found:
		return errdefs.NotFound("layer %d not found", l.ID)
	}
	return nil
}

func (t layers) Rebase(id, parent int64) error {
	found, err := t.changeOne("UPDATE layers SET parent_id = ? WHERE id = ?", nullID(parent), id)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("rebase layer %d: parent layer %d does not exist", id, parent)
	case err != nil:
		return fmt.Errorf("rebase layer %d onto %d: %w", id, parent, err)
	case !found:
		return errdefs.NotFound("layer %d not found", id)
	}
	return nil
}

func (t layers) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM layers WHERE id = ?", id)
	switch {
	case t.d.IsForeignKey(err):
		return layerInUse(t.db, id)
	case err != nil:
		return fmt.Errorf("delete layer %d: %w", id, err)
	case !found:
		return errdefs.NotFound("layer %d not found", id)
	}
	return nil
}

// layerInUse explains why layer id cannot be deleted.
func layerInUse(t *db, id int64) error {
	var (
		path          string
		kids, onDisks int
	)
	err := t.c.Row(`SELECT path,
		(SELECT count(*) FROM layers WHERE parent_id = l.id),
		(SELECT count(*) FROM disks WHERE top_layer_id = l.id)
		FROM layers l WHERE id = ?`, id).Scan(&path, &kids, &onDisks)
	if err != nil {
		return errdefs.Conflict("layer %d is still in use", id)
	}
	var users []string
	if kids > 0 {
		users = append(users, fmt.Sprintf("%d child layer(s)", kids))
	}
	if onDisks > 0 {
		users = append(users, fmt.Sprintf("%d disk(s) as their top layer", onDisks))
	}
	return errdefs.Conflict("layer %d %q is still in use by %s", id, path, strings.Join(users, " and "))
}

func (t layers) Children(id int64) ([]store.Layer, error) {
	ls, err := queryAll(t.db, scanLayer, "SELECT "+layerCols+" FROM layers WHERE parent_id = ? ORDER BY id", id)
	if err != nil {
		return nil, fmt.Errorf("children of layer %d: %w", id, err)
	}
	return ls, nil
}

func (t layers) DisksWithTop(id int64) ([]store.Disk, error) {
	ds, err := queryAll(t.db, scanDisk, "SELECT "+diskCols+" FROM disks d WHERE top_layer_id = ? ORDER BY id", id)
	if err != nil {
		return nil, fmt.Errorf("disks on layer %d: %w", id, err)
	}
	return ds, nil
}

func (t layers) BySHA256(sum string) (*store.Layer, error) {
	if sum == "" {
		return nil, errdefs.Invalid("layer by SHA-256: no digest")
	}
	l, err := queryOne(t.db, scanLayer, "SELECT "+layerCols+" FROM layers WHERE sha256 = ? AND frozen = "+t.d.True+" ORDER BY id LIMIT 1", sum)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("no frozen layer has SHA-256 %s", sum)
	case err != nil:
		return nil, fmt.Errorf("layer by SHA-256 %s: %w", sum, err)
	}
	return &l, nil
}
