package sqlstore

import (
	"database/sql"
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

const configCols = "id, name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at, kind, workspace_id, owner_id, host, fence_allow, instant_of"

func scanConfig(s Scanner) (store.Config, error) {
	var (
		c                store.Config
		created, updated int64
		ws, own          sql.NullInt64
	)
	err := s.Scan(&c.ID, &c.Name, &c.Description, &c.Owner, &c.State, &c.Fenced, &c.FencePolicy, &c.LastError, &created, &updated, &c.Kind, &ws, &own, &c.Host, &c.FenceAllow, &c.InstantOf)
	c.CreatedAt, c.UpdatedAt = fromNanos(created), fromNanos(updated)
	c.WorkspaceID, c.OwnerID = ws.Int64, own.Int64
	return c, err
}

// The VM, disk and NIC queries alias their tables v, d and n, so that the
// same WHERE clause (on v) can select the VMs of one configuration and
// their disks and NICs.
const (
	vmCols   = "v.id, v.config_id, v.name, v.template_id, v.cpus, v.memory_mib, v.state, v.host, v.instance_id, v.hostname"
	diskCols = "d.id, d.vm_id, d.idx, d.top_layer_id"
	nicCols  = "n.id, n.vm_id, n.idx, n.network_id, n.mac, n.ip_mode, n.ip, n.allocation_id, n.external_allocation_id"
)

func scanVM(s Scanner) (store.VM, error) {
	var (
		v          store.VM
		templateID sql.NullInt64
	)
	err := s.Scan(&v.ID, &v.ConfigID, &v.Name, &templateID, &v.CPUs, &v.MemoryMiB, &v.State, &v.Host, &v.InstanceID, &v.Hostname)
	v.TemplateID = templateID.Int64
	return v, err
}

func scanDisk(s Scanner) (store.Disk, error) {
	var d store.Disk
	err := s.Scan(&d.ID, &d.VMID, &d.Index, &d.TopLayerID)
	return d, err
}

func (d *Dialect) scanNIC(s Scanner) (store.NIC, error) {
	var (
		n     store.NIC
		alloc sql.NullInt64
		ext   sql.NullInt64
	)
	if err := s.Scan(&n.ID, &n.VMID, &n.Index, &n.NetworkID, &n.MAC, &n.IPMode, d.ScanAddr(&n.IP), &alloc, &ext); err != nil {
		return n, err
	}
	n.AllocationID = alloc.Int64
	n.ExternalAllocationID = ext.Int64
	return n, nil
}

// Create writes the configuration with its VMs, disks and NICs, all
// or nothing, and sets every ID and back-reference in c.
func (t configs) Create(c *store.Config) error {
	created := stamp(c.CreatedAt)
	updated := c.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	err := t.savepoint(func() error {
		if c.Kind == "" {
			c.Kind = store.KindConfig
		}
		id, err := t.insert(`INSERT INTO configs (name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at, kind, workspace_id, owner_id, host, instant_of)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.Name, c.Description, c.Owner, c.State, c.Fenced, c.FencePolicy, c.LastError, created.UnixNano(), updated.UnixNano(), c.Kind,
			nullID(c.WorkspaceID), nullID(c.OwnerID), c.Host, c.InstantOf)
		switch {
		case t.d.IsUnique(err):
			return errdefs.Conflict("configuration %q: already exists", c.Name)
		case t.d.IsForeignKey(err):
			return errdefs.Conflict("configuration %q: %s", c.Name, missingOwnership(t.db, c.WorkspaceID, c.OwnerID))
		case err != nil:
			return fmt.Errorf("create configuration %q: %w", c.Name, err)
		}
		c.ID = id
		for i := range c.VMs {
			if err := createVM(t.db, c, &c.VMs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.CreatedAt, c.UpdatedAt = created, updated
	return nil
}

func createVM(t *db, c *store.Config, v *store.VM) error {
	v.ConfigID = c.ID
	id, err := t.insert(`INSERT INTO vms (config_id, name, template_id, cpus, memory_mib, state, host, instance_id, hostname) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		v.ConfigID, v.Name, nullID(v.TemplateID), v.CPUs, v.MemoryMiB, v.State, v.Host, v.InstanceID, v.Hostname)
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("configuration %q: VM %q: already exists", c.Name, v.Name)
	case err != nil:
		return fmt.Errorf("create configuration %q: VM %q: %w", c.Name, v.Name, err)
	}
	v.ID = id
	for i := range v.Disks {
		d := &v.Disks[i]
		d.VMID = v.ID
		id, err := t.insert(`INSERT INTO disks (vm_id, idx, top_layer_id) VALUES (?, ?, ?)`, d.VMID, d.Index, d.TopLayerID)
		switch {
		case t.d.IsUnique(err):
			return errdefs.Conflict("configuration %q: VM %q: disk %d: index used twice", c.Name, v.Name, d.Index)
		case t.d.IsForeignKey(err):
			return errdefs.Conflict("configuration %q: VM %q: disk %d: layer %d does not exist", c.Name, v.Name, d.Index, d.TopLayerID)
		case err != nil:
			return fmt.Errorf("create configuration %q: VM %q: disk %d: %w", c.Name, v.Name, d.Index, err)
		}
		d.ID = id
	}
	for i := range v.NICs {
		n := &v.NICs[i]
		n.VMID = v.ID
		// An instant copy's NICs repeat its source's MACs (shared_mac: the
		// unique index leaves them out); every other MAC is unique.
		id, err := t.insert(`INSERT INTO nics (vm_id, idx, network_id, mac, ip_mode, ip, allocation_id, external_allocation_id, shared_mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.VMID, n.Index, n.NetworkID, n.MAC, n.IPMode, t.d.Addr(n.IP), nullID(n.AllocationID), nullID(n.ExternalAllocationID), c.InstantOf != "")
		switch {
		case t.d.IsUnique(err):
			if macInUse(t, n.MAC) {
				return errdefs.Conflict("configuration %q: VM %q: MAC %s is already in use", c.Name, v.Name, n.MAC)
			}
			return errdefs.Conflict("configuration %q: VM %q: NIC %d: index used twice", c.Name, v.Name, n.Index)
		case t.d.IsForeignKey(err):
			return errdefs.Conflict("configuration %q: VM %q: NIC %d: %s", c.Name, v.Name, n.Index, missingNICRef(t, n))
		case err != nil:
			return fmt.Errorf("create configuration %q: VM %q: NIC %d: %w", c.Name, v.Name, n.Index, err)
		}
		n.ID = id
	}
	return nil
}

// missingNICRef names what a NIC refers to that does not exist, after a
// foreign key violation.
func missingNICRef(t *db, n *store.NIC) string {
	exists := func(table string, id int64) bool {
		var one int
		return t.c.Row("SELECT 1 FROM "+table+" WHERE id = ?", id).Scan(&one) == nil
	}
	switch {
	case !exists("networks", n.NetworkID):
		return fmt.Sprintf("network %d does not exist", n.NetworkID)
	case n.AllocationID != 0 && !exists("allocations", n.AllocationID):
		return fmt.Sprintf("allocation %d does not exist", n.AllocationID)
	case n.ExternalAllocationID != 0 && !exists("allocations", n.ExternalAllocationID):
		return fmt.Sprintf("external allocation %d does not exist", n.ExternalAllocationID)
	}
	return "refers to a record that does not exist"
}

// macInUse tells a duplicate MAC from a duplicate NIC index after a unique
// violation (SQLite's error names the constraint only in its text).
func macInUse(t *db, mac string) bool {
	var one int
	err := t.c.Row("SELECT 1 FROM nics WHERE mac = ?", mac).Scan(&one)
	return err == nil
}

func (t configs) Get(name string) (*store.Config, error) {
	c, err := queryOne(t.db, scanConfig, "SELECT "+configCols+" FROM configs WHERE name = ?", name)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("configuration %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get configuration %q: %w", name, err)
	}
	cs := []store.Config{c}
	if err := attachVMs(t.db, cs, "WHERE v.config_id = ?", c.ID); err != nil {
		return nil, fmt.Errorf("get configuration %q: %w", name, err)
	}
	return &cs[0], nil
}

func (t configs) GetByID(id int64) (*store.Config, error) {
	c, err := queryOne(t.db, scanConfig, "SELECT "+configCols+" FROM configs WHERE id = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("configuration %d not found", id)
	case err != nil:
		return nil, fmt.Errorf("get configuration %d: %w", id, err)
	}
	cs := []store.Config{c}
	if err := attachVMs(t.db, cs, "WHERE v.config_id = ?", c.ID); err != nil {
		return nil, fmt.Errorf("get configuration %q: %w", c.Name, err)
	}
	return &cs[0], nil
}

// List reads every configuration with four queries in all (configs,
// VMs, disks, NICs), whatever their number.
func (t configs) List() ([]store.Config, error) {
	cs, err := queryAll(t.db, scanConfig, "SELECT "+configCols+" FROM configs ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list configurations: %w", err)
	}
	if err := attachVMs(t.db, cs, ""); err != nil {
		return nil, fmt.Errorf("list configurations: %w", err)
	}
	return cs, nil
}

// attachVMs reads the VMs selected by where (a clause on v, the vms table)
// with their disks and NICs, and hangs them on their configurations in cs.
// VMs come in id order, disks and NICs in index order.
func attachVMs(t *db, cs []store.Config, where string, args ...any) error {
	vms, err := queryAll(t, scanVM, "SELECT "+vmCols+" FROM vms v "+where+" ORDER BY v.id", args...)
	if err != nil {
		return fmt.Errorf("VMs: %w", err)
	}
	if len(vms) == 0 {
		return nil
	}
	disks, err := queryAll(t, scanDisk, "SELECT "+diskCols+" FROM disks d JOIN vms v ON v.id = d.vm_id "+where+" ORDER BY d.vm_id, d.idx", args...)
	if err != nil {
		return fmt.Errorf("disks: %w", err)
	}
	nics, err := queryAll(t, t.d.scanNIC, "SELECT "+nicCols+" FROM nics n JOIN vms v ON v.id = n.vm_id "+where+" ORDER BY n.vm_id, n.idx", args...)
	if err != nil {
		return fmt.Errorf("NICs: %w", err)
	}
	disksOf := make(map[int64][]store.Disk, len(vms))
	for _, d := range disks {
		disksOf[d.VMID] = append(disksOf[d.VMID], d)
	}
	nicsOf := make(map[int64][]store.NIC, len(vms))
	for _, n := range nics {
		nicsOf[n.VMID] = append(nicsOf[n.VMID], n)
	}
	vmsOf := make(map[int64][]store.VM, len(cs))
	for _, v := range vms {
		v.Disks, v.NICs = disksOf[v.ID], nicsOf[v.ID]
		vmsOf[v.ConfigID] = append(vmsOf[v.ConfigID], v)
	}
	for i := range cs {
		cs[i].VMs = vmsOf[cs[i].ID]
	}
	return nil
}

// Update writes the configuration's own fields and stamps UpdatedAt
// with the current time (c.UpdatedAt is set to it).
func (t configs) Update(c *store.Config) error {
	updated := now()
	found, err := t.changeOne(`UPDATE configs SET name = ?, description = ?, owner = ?, state = ?, fenced = ?,
		fence_policy = ?, fence_allow = ?, last_error = ?, updated_at = ?, host = ? WHERE id = ?`,
		c.Name, c.Description, c.Owner, c.State, c.Fenced, c.FencePolicy, c.FenceAllow, c.LastError, updated.UnixNano(), c.Host, c.ID)
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("configuration %q: already exists", c.Name)
	case err != nil:
		return fmt.Errorf("update configuration %q: %w", c.Name, err)
	case !found:
		return errdefs.NotFound("configuration %d not found", c.ID)
	}
	c.UpdatedAt = updated
	return nil
}

func (t configs) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM configs WHERE id = ?", id)
	switch {
	case err != nil:
		return fmt.Errorf("delete configuration %d: %w", id, err)
	case !found:
		return errdefs.NotFound("configuration %d not found", id)
	}
	return nil
}

func (t configs) UpdateVM(v *store.VM) error {
	found, err := t.changeOne("UPDATE vms SET state = ?, cpus = ?, memory_mib = ?, host = ?, instance_id = ?, hostname = ? WHERE id = ?",
		v.State, v.CPUs, v.MemoryMiB, v.Host, v.InstanceID, v.Hostname, v.ID)
	switch {
	case err != nil:
		return fmt.Errorf("update VM %q: %w", v.Name, err)
	case !found:
		return errdefs.NotFound("VM %d not found", v.ID)
	}
	return nil
}

func (t configs) SetDiskTop(diskID, layerID int64) error {
	found, err := t.changeOne("UPDATE disks SET top_layer_id = ? WHERE id = ?", layerID, diskID)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("disk %d: layer %d does not exist", diskID, layerID)
	case err != nil:
		return fmt.Errorf("disk %d: set top layer %d: %w", diskID, layerID, err)
	case !found:
		return errdefs.NotFound("disk %d not found", diskID)
	}
	return nil
}

func (t configs) UpdateNIC(n *store.NIC) error {
	found, err := t.changeOne("UPDATE nics SET mac = ?, ip_mode = ?, ip = ?, allocation_id = ?, external_allocation_id = ? WHERE id = ?",
		n.MAC, n.IPMode, t.d.Addr(n.IP), nullID(n.AllocationID), nullID(n.ExternalAllocationID), n.ID)
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("NIC %d: MAC %s is already in use", n.ID, n.MAC)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("NIC %d: %s", n.ID, missingNICRef(t.db, n))
	case err != nil:
		return fmt.Errorf("update NIC %d: %w", n.ID, err)
	case !found:
		return errdefs.NotFound("NIC %d not found", n.ID)
	}
	return nil
}
