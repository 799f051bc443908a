package store

import "time"

// Snapshots of configurations (see Snapshot). (ConfigID, Name) is unique;
// deleting the configuration deletes its snapshots. A layer a snapshot
// names cannot be deleted (ErrConflict) while the snapshot exists.
type Snapshots interface {
	// Create writes s with its disks and states and sets ID and
	// CreatedAt (when zero).
	Create(s *Snapshot) error
	// Get returns configuration configID's snapshot of that name.
	Get(configID int64, name string) (*Snapshot, error)
	// List returns the snapshots of configuration configID, or of every
	// configuration when configID is 0, ordered by ID.
	List(configID int64) ([]Snapshot, error)
	// SetParent makes parentID (0: none) the parent of snapshot id.
	SetParent(id, parentID int64) error
	// Delete deletes the snapshot with its disks and states; a snapshot
	// with children is ErrConflict.
	Delete(id int64) error
	// WithLayer returns the snapshots that name layer id.
	WithLayer(layerID int64) ([]Snapshot, error)
}

// Snapshot is a named point of a configuration's history: the frozen
// layer each VM disk had as its top when it was taken, and, when taken
// with state, each VM's saved memory and device state. ParentID is the
// snapshot the configuration had continued from (0: none), so the
// snapshots of a configuration form a tree.
type Snapshot struct {
	ID        int64
	ConfigID  int64
	ParentID  int64
	Name      string
	CreatedAt time.Time
	WithState bool
	Disks     []SnapshotDisk  // ordered by VM ID, then disk index
	States    []SnapshotState // ordered by VM ID; empty without state
}

// SnapshotDisk is the frozen layer of disk Index of VM VMID in a snapshot.
type SnapshotDisk struct {
	VMID    int64
	Index   int
	LayerID int64
}

// SnapshotState is VM VMID's saved state file in a snapshot (a path
// relative to the data directory).
type SnapshotState struct {
	VMID int64
	Path string
}
