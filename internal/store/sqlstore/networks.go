package sqlstore

import (
	"database/sql"
	"fmt"
	"net/netip"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

const networkCols = "id, name, subnet, gateway, dns, pools, created_at, workspace_id, owner_id"

// ipRange is the JSON form of a store.IPRange in the pools column, with
// names of its own so that renaming the Go fields cannot change the data.
type ipRange struct {
	First netip.Addr `json:"first"`
	Last  netip.Addr `json:"last"`
}

func (d *Dialect) scanNetwork(s Scanner) (store.Network, error) {
	var (
		n       store.Network
		rs      []ipRange
		created int64
		ws, own sql.NullInt64
	)
	if err := s.Scan(&n.ID, &n.Name, d.ScanPrefix(&n.Subnet), d.ScanAddr(&n.Gateway), d.ScanList(&n.DNS), d.ScanList(&rs), &created, &ws, &own); err != nil {
		return n, err
	}
	n.WorkspaceID, n.OwnerID = ws.Int64, own.Int64
	n.DNS = orNil(n.DNS)
	for _, r := range rs {
		n.Pools = append(n.Pools, store.IPRange{First: r.First, Last: r.Last})
	}
	n.CreatedAt = fromNanos(created)
	return n, nil
}

func (t networks) Create(n *store.Network) error {
	dns, err := t.list(fmt.Sprintf("network %q: dns", n.Name), n.DNS)
	if err != nil {
		return err
	}
	rs := make([]ipRange, len(n.Pools))
	for i, r := range n.Pools {
		rs[i] = ipRange{First: r.First, Last: r.Last}
	}
	pools, err := t.list(fmt.Sprintf("network %q: pools", n.Name), rs)
	if err != nil {
		return err
	}
	created := stamp(n.CreatedAt)
	id, err := t.insert(`INSERT INTO networks (name, subnet, gateway, dns, pools, created_at, workspace_id, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		n.Name, t.d.Prefix(n.Subnet), t.d.Addr(n.Gateway), dns, pools, created.UnixNano(), nullID(n.WorkspaceID), nullID(n.OwnerID))
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("network %q: already exists", n.Name)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("network %q: %s", n.Name, missingOwnership(t.db, n.WorkspaceID, n.OwnerID))
	case err != nil:
		return fmt.Errorf("create network %q: %w", n.Name, err)
	}
	n.ID, n.CreatedAt = id, created
	return nil
}

func (t networks) Get(name string) (*store.Network, error) {
	n, err := queryOne(t.db, t.d.scanNetwork, "SELECT "+networkCols+" FROM networks WHERE name = ?", name)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("network %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get network %q: %w", name, err)
	}
	return &n, nil
}

func (t networks) GetByID(id int64) (*store.Network, error) {
	n, err := queryOne(t.db, t.d.scanNetwork, "SELECT "+networkCols+" FROM networks WHERE id = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("network %d not found", id)
	case err != nil:
		return nil, fmt.Errorf("get network %d: %w", id, err)
	}
	return &n, nil
}

func (t networks) List() ([]store.Network, error) {
	ns, err := queryAll(t.db, t.d.scanNetwork, "SELECT "+networkCols+" FROM networks ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return ns, nil
}

func (t networks) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM networks WHERE id = ?", id)
	switch {
	case t.d.IsForeignKey(err):
		return networkInUse(t.db, id)
	case err != nil:
		return fmt.Errorf("delete network %d: %w", id, err)
	case !found:
		return errdefs.NotFound("network %d not found", id)
	}
	return nil
}

// networkInUse explains why network id cannot be deleted.
func networkInUse(t *db, id int64) error {
	var (
		name         string
		allocs, nics int
	)
	err := t.c.Row(`SELECT name,
		(SELECT count(*) FROM allocations WHERE network_id = n.id),
		(SELECT count(*) FROM nics WHERE network_id = n.id)
		FROM networks n WHERE id = ?`, id).Scan(&name, &allocs, &nics)
	if err != nil {
		return errdefs.Conflict("network %d is still in use", id)
	}
	var users []string
	if allocs > 0 {
		users = append(users, fmt.Sprintf("%d allocated address(es)", allocs))
	}
	if nics > 0 {
		users = append(users, fmt.Sprintf("%d NIC(s)", nics))
	}
	return errdefs.Conflict("network %q is still in use by %s", name, strings.Join(users, " and "))
}

const allocationCols = "id, network_id, ip, kind, holder, created_at"

func (d *Dialect) scanAllocation(s Scanner) (store.Allocation, error) {
	var (
		a       store.Allocation
		created int64
	)
	if err := s.Scan(&a.ID, &a.NetworkID, d.ScanAddr(&a.IP), &a.Kind, &a.Holder, &created); err != nil {
		return a, err
	}
	a.CreatedAt = fromNanos(created)
	return a, nil
}

func (t allocations) Create(a *store.Allocation) error {
	if !a.IP.IsValid() {
		return errdefs.Invalid("allocation on network %d: no address", a.NetworkID)
	}
	created := stamp(a.CreatedAt)
	id, err := t.insert(`INSERT INTO allocations (network_id, ip, kind, holder, created_at) VALUES (?, ?, ?, ?, ?)`,
		a.NetworkID, t.d.Addr(a.IP), a.Kind, a.Holder, created.UnixNano())
	switch {
	case t.d.IsUnique(err):
		// Held by a transaction this one cannot see: a writer on another
		// connection took it after this one read the free addresses.
		// Serialised, this one would have read it as held and picked
		// another, so the transaction runs again rather than failing.
		t.c.Raced(fmt.Errorf("address %s on network %d: allocated by a concurrent transaction", a.IP, a.NetworkID),
			"SELECT 1 FROM allocations WHERE network_id = ? AND ip = ?", a.NetworkID, t.d.Addr(a.IP))
		return errdefs.Conflict("address %s on network %d: already allocated", a.IP, a.NetworkID)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("address %s: network %d does not exist", a.IP, a.NetworkID)
	case err != nil:
		return fmt.Errorf("allocate %s on network %d: %w", a.IP, a.NetworkID, err)
	}
	a.ID, a.CreatedAt = id, created
	return nil
}

func (t allocations) Get(id int64) (*store.Allocation, error) {
	a, err := queryOne(t.db, t.d.scanAllocation, "SELECT "+allocationCols+" FROM allocations WHERE id = ?", id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("allocation %d not found", id)
	case err != nil:
		return nil, fmt.Errorf("get allocation %d: %w", id, err)
	}
	return &a, nil
}

func (t allocations) List(networkID int64) ([]store.Allocation, error) {
	as, err := queryAll(t.db, t.d.scanAllocation, "SELECT "+allocationCols+" FROM allocations WHERE network_id = ? ORDER BY id", networkID)
	if err != nil {
		return nil, fmt.Errorf("list allocations of network %d: %w", networkID, err)
	}
	return as, nil
}

func (t allocations) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM allocations WHERE id = ?", id)
	switch {
	case t.d.IsForeignKey(err):
		return allocationInUse(t.db, id)
	case err != nil:
		return fmt.Errorf("delete allocation %d: %w", id, err)
	case !found:
		return errdefs.NotFound("allocation %d not found", id)
	}
	return nil
}

// allocationInUse explains why allocation id cannot be deleted.
func allocationInUse(t *db, id int64) error {
	var (
		ip                string
		carried, external int
	)
	err := t.c.Row(`SELECT `+t.d.HostOf("ip")+`,
		(SELECT count(*) FROM nics WHERE allocation_id = a.id),
		(SELECT count(*) FROM nics WHERE external_allocation_id = a.id)
		FROM allocations a WHERE id = ?`, id).Scan(&ip, &carried, &external)
	if err != nil {
		return errdefs.Conflict("allocation %d is still in use by a NIC", id)
	}
	var users []string
	if carried > 0 {
		users = append(users, fmt.Sprintf("carried by %d NIC(s)", carried))
	}
	if external > 0 {
		users = append(users, fmt.Sprintf("mapped by a fence to %d NIC(s)", external))
	}
	return errdefs.Conflict("address %s (allocation %d) is still %s", ip, id, strings.Join(users, " and "))
}

func (t allocations) NICs(id int64) ([]store.NIC, error) {
	ns, err := queryAll(t.db, t.d.scanNIC, "SELECT "+nicCols+" FROM nics n WHERE allocation_id = ? ORDER BY id", id)
	if err != nil {
		return nil, fmt.Errorf("NICs carrying allocation %d: %w", id, err)
	}
	return ns, nil
}
