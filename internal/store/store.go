// Package store is the persistence interface of Stagehand: the records it
// keeps (templates, layers, networks, IP allocations, configurations with
// their VMs, disks and NICs, and the operation journal) and the transaction
// boundary every state change goes through. store/sqlite is the embedded
// default; a PostgreSQL implementation satisfies the same interface.
//
// Errors: a missing record is errdefs.ErrNotFound; a unique constraint
// violation (duplicate name, IP, MAC, path) is errdefs.ErrConflict. Both are
// wrapped with the name of the thing.
package store

import (
	"context"
	"net/netip"
	"time"
)

// Store opens transactions. Implementations serialise writers so that a read
// followed by a write inside one Update sees no interleaved change (IP
// allocation relies on this).
type Store interface {
	// Update runs fn in a read-write transaction, committed when fn returns
	// nil and rolled back otherwise (also on panic).
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is one transaction. Create* methods set the ID (and CreatedAt when zero)
// of the record they are given. List* methods return records ordered by ID.
type Tx interface {
	// Directory: organizations, workspaces, users, groups, memberships,
	// tokens, shares, quotas, and the lists filtered by who may see them
	// (identity.go).
	Directory

	// Templates. DeleteTemplate does not touch the template's layers.
	CreateTemplate(t *Template) error
	GetTemplate(name string) (*Template, error)
	GetTemplateByID(id int64) (*Template, error)
	ListTemplates() ([]Template, error)
	DeleteTemplate(id int64) error

	// Layers. Path is unique.
	CreateLayer(l *Layer) error
	GetLayer(id int64) (*Layer, error)
	ListLayers() ([]Layer, error)
	// UpdateLayer writes Frozen, TemplateID and VirtualSize.
	UpdateLayer(l *Layer) error
	DeleteLayer(id int64) error
	// LayerChildren returns the layers whose ParentID is id.
	LayerChildren(id int64) ([]Layer, error)
	// DisksWithTop returns the disks whose TopLayerID is id.
	DisksWithTop(id int64) ([]Disk, error)

	// Networks. Name is unique.
	CreateNetwork(n *Network) error
	GetNetwork(name string) (*Network, error)
	GetNetworkByID(id int64) (*Network, error)
	ListNetworks() ([]Network, error)
	DeleteNetwork(id int64) error

	// IP allocations: (NetworkID, IP) is unique, so a second allocation of a
	// held address fails with ErrConflict.
	CreateAllocation(a *Allocation) error
	GetAllocation(id int64) (*Allocation, error)
	ListAllocations(networkID int64) ([]Allocation, error)
	DeleteAllocation(id int64) error
	// NICsWithAllocation returns the NICs that carry allocation id (its family).
	NICsWithAllocation(id int64) ([]NIC, error)

	// Configurations are aggregates: Create and Get include VMs with their
	// disks and NICs. Name is unique; MAC is unique over all NICs.
	CreateConfig(c *Config) error
	GetConfig(name string) (*Config, error)
	GetConfigByID(id int64) (*Config, error)
	ListConfigs() ([]Config, error)
	// UpdateConfig writes the configuration's own fields (not its VMs).
	UpdateConfig(c *Config) error
	// DeleteConfig deletes the configuration with its VMs, disks and NICs.
	DeleteConfig(id int64) error
	// UpdateVM writes the VM's own fields (state, CPUs, memory).
	UpdateVM(v *VM) error
	// SetDiskTop points a disk at a new top layer.
	SetDiskTop(diskID, layerID int64) error
	// UpdateNIC writes MAC, IPMode, IP, AllocationID and ExternalAllocationID.
	UpdateNIC(n *NIC) error

	// The operation journal (see Op).
	CreateOp(o *Op) error
	UpdateOp(o *Op) error
	DeleteOp(id int64) error
	ListOps() ([]Op, error)

	// Archives. Name and Dir are unique.
	CreateArchive(a *Archive) error
	GetArchive(name string) (*Archive, error)
	ListArchives() ([]Archive, error)
	DeleteArchive(id int64) error

	// Leases: at most one per configuration and one per archive; deleting
	// the configuration or archive deletes its lease.
	// PutLease inserts or replaces the lease of l.ConfigID or l.ArchiveID
	// (exactly one is set) and sets l.ID.
	PutLease(l *Lease) error
	LeaseOfConfig(configID int64) (*Lease, error)
	LeaseOfArchive(archiveID int64) (*Lease, error)
	ListLeases() ([]Lease, error)

	// Events, the log of state changes. AddEvent sets ID (increasing) and
	// At when zero. ListEvents returns up to limit events with ID > afterID
	// in ID order (limit <= 0: all). DeleteEventsBefore deletes events
	// older than t and returns how many.
	AddEvent(e *Event) error
	ListEvents(afterID int64, limit int) ([]Event, error)
	DeleteEventsBefore(t time.Time) (int64, error)

	// Hosts: the daemons sharing the store, one per name (see Host).
	// RegisterHost inserts h, or updates the host of that name: its
	// advertise URL, capacity, StartedAt and LastSeen; a removed host that
	// registers again is active, an active or draining one keeps its
	// state. It sets h.ID, h.State and h.CreatedAt.
	RegisterHost(h *Host) error
	GetHost(name string) (*Host, error)
	// ListHosts returns every host, removed ones too, ordered by ID.
	ListHosts() ([]Host, error)
	// TouchHost sets the host's LastSeen (its heartbeat).
	TouchHost(name string, at time.Time) error
	// SetHostState sets the host's State: HostActive, HostDraining or
	// HostRemoved (anything else is ErrInvalid).
	SetHostState(name, state string) error
}

// Template is a read-only VM image: base layers plus hardware defaults.
type Template struct {
	ID          int64
	Name        string
	Description string
	CPUs        int
	MemoryMiB   int
	// LayerIDs are the template's base layers, one per disk, in disk order.
	LayerIDs []int64
	// Boot: empty Kernel means BIOS boot from the first disk; otherwise
	// direct kernel boot with these files (paths inside the data dir).
	Kernel    string
	Initrd    string
	Cmdline   string
	CreatedAt time.Time
	// WorkspaceID and OwnerID place the object (see identity.go): 0 is
	// none (an object made before workspaces existed, or the system's).
	// Create* writes them; SetOwnership changes them.
	WorkspaceID int64
	OwnerID     int64
}

// Layer is one qcow2 file of a disk chain.
type Layer struct {
	ID int64
	// Path is relative to the data directory (e.g. "layers/l-ab12.qcow2").
	Path string
	// ParentID is the backing layer; 0 for a base.
	ParentID int64
	// Frozen layers are read-only and may have any number of children;
	// a writable layer is the top of exactly one disk.
	Frozen bool
	// TemplateID is set on a template's base layer while the template exists.
	TemplateID  int64
	VirtualSize int64
	CreatedAt   time.Time
}

// Network is an L2 segment with a subnet and an IP pool.
type Network struct {
	ID        int64
	Name      string
	Subnet    netip.Prefix
	Gateway   netip.Addr
	DNS       []netip.Addr
	Pools     []IPRange
	CreatedAt time.Time
	// WorkspaceID and OwnerID place the object (see identity.go): 0 is
	// none (an object made before workspaces existed, or the system's).
	// Create* writes them; SetOwnership changes them.
	WorkspaceID int64
	OwnerID     int64
}

// IPRange is an inclusive range of addresses.
type IPRange struct {
	First netip.Addr
	Last  netip.Addr
}

// Allocation kinds.
const (
	AllocInternal = "internal" // a NIC's own address (pool or manual), held by its family
	AllocExternal = "external" // a fence's outside address, held by one deployment
)

// Allocation is an address taken from a network. An internal allocation is
// held by every NIC that carries it (the family) and is released when the
// last one is deleted or changes address.
type Allocation struct {
	ID        int64
	NetworkID int64
	IP        netip.Addr
	Kind      string
	// Holder describes an external allocation's owner (e.g. "fence of web").
	Holder    string
	CreatedAt time.Time
}

// Configuration states.
const (
	StateUndeployed  = "undeployed"
	StateDeploying   = "deploying"
	StateDeployed    = "deployed"
	StateUndeploying = "undeploying"
	StateFailed      = "failed"
)

// Configuration kinds.
const (
	KindConfig  = "config"  // a workspace configuration
	KindLibrary = "library" // a read-only library entry: never deployed or changed
)

// Config is a named group of VMs.
type Config struct {
	ID   int64
	Name string
	// Kind is KindConfig or KindLibrary ("" is stored as KindConfig); it
	// is set at creation and never changes.
	Kind        string
	Description string
	Owner       string
	State       string
	Fenced      bool
	FencePolicy string
	// LastError is the reason of the last failure (state failed).
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
	VMs       []VM
	// WorkspaceID and OwnerID place the object (see identity.go): 0 is
	// none (an object made before workspaces existed, or the system's).
	// Create* writes them; SetOwnership changes them.
	WorkspaceID int64
	OwnerID     int64
	// Host is the name of the host (see Host) the configuration was last
	// deployed on: where its VMs run while it is deployed, and its saved
	// states and writable layers stay. "" is never deployed, or deployed
	// before hosts were recorded. Create and UpdateConfig write it.
	Host string
}

// VM is one machine of a configuration.
type VM struct {
	ID         int64
	ConfigID   int64
	Name       string
	TemplateID int64 // where it came from; informational once created
	CPUs       int
	MemoryMiB  int
	State      string
	Disks      []Disk
	NICs       []NIC
}

// Disk is one virtual disk of a VM; its content is the chain from TopLayerID
// down to a base.
type Disk struct {
	ID         int64
	VMID       int64
	Index      int
	TopLayerID int64
}

// NIC IP modes.
const (
	IPModePool   = "pool"
	IPModeManual = "manual"
	IPModeDHCP   = "dhcp"
)

// NIC is a network interface of a VM.
type NIC struct {
	ID        int64
	VMID      int64
	Index     int
	NetworkID int64
	MAC       string
	IPMode    string
	// IP is the zero Addr for dhcp NICs and cleared manual ones.
	IP netip.Addr
	// AllocationID is the internal allocation the NIC carries; 0 if none.
	AllocationID int64
	// ExternalAllocationID is the external address a fence maps to this
	// NIC while its configuration is deployed fenced; 0 otherwise.
	ExternalAllocationID int64
}

// Op is a journal entry for a multi-step operation that touches files. It is
// written before the first file is touched. While Committed is false, a
// restart rolls the operation back: it removes CreatedFiles and makes
// FrozenFiles writable again (the store has not changed yet). The commit
// transaction applies the store changes and sets Committed; from then on a
// restart rolls forward: it removes RemoveFiles and deletes the entry.
type Op struct {
	ID           int64
	Kind         string // "clone", "create", "import", "delete", "consolidate", ...
	Subject      string // the configuration or template name
	CreatedFiles []string
	FrozenFiles  []string
	RemoveFiles  []string
	Committed    bool
	StartedAt    time.Time
}

// Archive is a consolidated, read-only copy of a configuration in the
// archive storage. The lab owns the shape of Manifest (JSON): VMs, NICs,
// networks, templates and a checksum per file.
type Archive struct {
	ID   int64
	Name string
	// Source is where it came from: a configuration's name, or the bundle
	// file it was imported from.
	Source string
	// Dir is its directory, relative to the archive storage.
	Dir       string
	Manifest  []byte
	Size      int64 // bytes of its files
	CreatedAt time.Time
	// WorkspaceID and OwnerID place the object (see identity.go): 0 is
	// none (an object made before workspaces existed, or the system's).
	// Create* writes them; SetOwnership changes them.
	WorkspaceID int64
	OwnerID     int64
}

// Undeploy actions of a deployment lease that runs out.
const (
	UndeploySave    = "save"    // suspend the VMs to state files
	UndeployDiscard = "discard" // power the VMs off
)

// Lease is the storage and deployment lease of one configuration or
// library entry (ConfigID) or archive (ArchiveID); exactly one is set. A
// zero time means none (never).
type Lease struct {
	ID        int64
	ConfigID  int64
	ArchiveID int64
	// StorageExpires is when the storage lease runs out.
	StorageExpires time.Time
	// ExpiredAt is when the reaper found the storage lease run out; the
	// grace period before deletion counts from it. Extending the lease
	// clears it.
	ExpiredAt time.Time
	// DeployLease is the length of the deployment lease each deploy gets;
	// 0 means deployments do not expire.
	DeployLease time.Duration
	// DeployExpires is when the current deployment is undeployed.
	DeployExpires time.Time
	// UndeployAction is UndeploySave or UndeployDiscard.
	UndeployAction string
	// LastUsed is the creation, or the last deploy, undeploy, checkout,
	// restore or export since: what "idle" is measured from.
	LastUsed time.Time
}

// Event is one entry of the log of state changes.
type Event struct {
	ID      int64
	At      time.Time
	Actor   string // who asked ("reaper" for the lab's own actions)
	Action  string // "create", "clone", "deploy", "lease-expired", ...
	Object  string // "config", "library", "archive", "template", "network"
	Subject string // the object's name
	Result  string // "ok" or "failed"
	Detail  string
}

// Host states.
const (
	HostActive   = "active"   // takes new deployments
	HostDraining = "draining" // keeps what runs there; placement skips it
	HostRemoved  = "removed"  // gone from the installation until it registers again
)

// ValidHostState reports whether s is one of the host states.
func ValidHostState(s string) bool {
	return s == HostActive || s == HostDraining || s == HostRemoved
}

// Host is one daemon of an installation whose hosts share the store. It
// registers at start and refreshes LastSeen at each heartbeat; whether it
// is online is the reader's judgement of LastSeen (cluster.Offline).
type Host struct {
	ID   int64
	Name string
	// AdvertiseURL is where the other hosts and clients reach its API.
	AdvertiseURL string
	State        string
	// Capacity: the memory and processors it offers to guests.
	MemoryMiB int
	CPUs      int
	// StartedAt is when its daemon last started; LastSeen its last heartbeat.
	StartedAt time.Time
	LastSeen  time.Time
	CreatedAt time.Time
}
