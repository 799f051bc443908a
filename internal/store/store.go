// Package store is the persistence interface of Stagehand: the records it
// keeps (templates, layers, networks, IP allocations, configurations with
// their VMs, disks and NICs, and the operation journal) and the transaction
// boundary every state change goes through. store/sqlite is the embedded
// default; a PostgreSQL implementation satisfies the same interface.
//
// Errors: a missing record is errdefs.ErrNotFound; a unique constraint
// violation (duplicate name, IP, MAC, path) is errdefs.ErrConflict. Both are
// wrapped with the name of the thing.
//
// store/sqlstore holds the record code of both SQL stores once, over a
// connection and a dialect; store/storetest is the conformance suite every
// implementation passes.
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

// Tx is one transaction: an accessor a kind of record, each a small
// interface (tx.Templates().Get(name), tx.Configs().UpdateNIC(n)).
// Conventions of every accessor: Create sets the ID (and CreatedAt when
// zero) of the record it is given; List returns records ordered by ID; a
// missing record is ErrNotFound; a taken name or a reference to a
// missing record is ErrConflict, and deleting what is still referred to
// is ErrConflict naming what refers to it.
type Tx interface {
	Templates() Templates
	Layers() Layers
	Networks() Networks
	Allocations() Allocations
	Configs() Configs
	Ops() Ops
	Archives() Archives
	Leases() Leases
	LeasePolicies() LeasePolicies
	Events() Events
	Hosts() Hosts
	// Snapshot trees of configurations (snapshots.go).
	Snapshots() Snapshots
	// Many hosts (cluster.go).
	HostLayers() HostLayers
	Work() Work
	FenceVNIs() FenceVNIs

	// The directory: who is who, and who may see what (identity.go).
	Orgs() Orgs
	Workspaces() Workspaces
	Users() Users
	Groups() Groups
	Memberships() Memberships
	Tokens() Tokens
	Shares() Shares
	Quotas() Quotas
	Viewers() Viewers
	Objects() Objects
	Visible() Visible
}

// Templates. Delete does not touch the template's layers.
type Templates interface {
	Create(t *Template) error
	Get(name string) (*Template, error)
	GetByID(id int64) (*Template, error)
	List() ([]Template, error)
	Delete(id int64) error
}

// Layers. Path is unique.
type Layers interface {
	Create(l *Layer) error
	Get(id int64) (*Layer, error)
	List() ([]Layer, error)
	// Update writes Frozen, TemplateID, VirtualSize, SHA256 and Size.
	Update(l *Layer) error
	Delete(id int64) error
	// Children returns the layers whose ParentID is id.
	Children(id int64) ([]Layer, error)
	// DisksWithTop returns the disks whose TopLayerID is id.
	DisksWithTop(id int64) ([]Disk, error)
	// BySHA256 returns the frozen layer whose content has that digest
	// (the oldest when several have); ErrNotFound when none.
	BySHA256(sum string) (*Layer, error)
	// Rebase records that layer id's file now names parent as its
	// backing file (a child moved onto a shortcut layer: the file's
	// header was rewritten, its data not touched). ErrNotFound when id
	// is missing, Conflict when parent is.
	Rebase(id, parent int64) error
}

// Networks. Name is unique.
type Networks interface {
	Create(n *Network) error
	Get(name string) (*Network, error)
	GetByID(id int64) (*Network, error)
	List() ([]Network, error)
	Delete(id int64) error
}

// Allocations of IP addresses: (NetworkID, IP) is unique, so a second
// allocation of a held address fails with ErrConflict.
type Allocations interface {
	Create(a *Allocation) error
	Get(id int64) (*Allocation, error)
	// List returns the allocations of one network.
	List(networkID int64) ([]Allocation, error)
	Delete(id int64) error
	// NICs returns the NICs that carry allocation id (its family).
	NICs(id int64) ([]NIC, error)
}

// Configs: configurations are aggregates: Create and Get include VMs with
// their disks and NICs. Name is unique; MAC is unique over all NICs.
type Configs interface {
	Create(c *Config) error
	Get(name string) (*Config, error)
	GetByID(id int64) (*Config, error)
	List() ([]Config, error)
	// Update writes the configuration's own fields (not its VMs).
	Update(c *Config) error
	// Delete deletes the configuration with its VMs, disks and NICs.
	Delete(id int64) error
	// UpdateVM writes the VM's own fields (state, CPUs, memory, host,
	// instance-id, hostname).
	UpdateVM(v *VM) error
	// SetDiskTop points a disk at a new top layer.
	SetDiskTop(diskID, layerID int64) error
	// UpdateNIC writes MAC, IPMode, IP, AllocationID and ExternalAllocationID.
	UpdateNIC(n *NIC) error
}

// Ops is the operation journal (see Op).
type Ops interface {
	Create(o *Op) error
	Update(o *Op) error
	Delete(id int64) error
	List() ([]Op, error)
}

// Archives. Name and Dir are unique.
type Archives interface {
	Create(a *Archive) error
	Get(name string) (*Archive, error)
	List() ([]Archive, error)
	Delete(id int64) error
}

// Leases: at most one per configuration and one per archive; deleting the
// configuration or archive deletes its lease.
type Leases interface {
	// Put inserts or replaces the lease of l.ConfigID or l.ArchiveID
	// (exactly one is set) and sets l.ID.
	Put(l *Lease) error
	OfConfig(configID int64) (*Lease, error)
	OfArchive(archiveID int64) (*Lease, error)
	List() ([]Lease, error)
}

// Events, the log of state changes.
type Events interface {
	// Add sets ID (increasing) and At when zero.
	Add(e *Event) error
	// List returns up to limit events with ID > afterID in ID order
	// (limit <= 0: all).
	List(afterID int64, limit int) ([]Event, error)
	// Of returns up to limit events about one object, those whose Object
	// and Subject are object and subject, with ID < beforeID (beforeID <=
	// 0: from the newest), newest first (limit <= 0: all). An index
	// answers it, however old the events are.
	Of(object, subject string, beforeID int64, limit int) ([]Event, error)
	// Newest returns the newest event's ID; 0 when the log is empty.
	Newest() (int64, error)
	// DeleteBefore deletes events older than t and returns how many.
	DeleteBefore(t time.Time) (int64, error)
}

// Hosts: the daemons sharing the store, one per name (see Host).
type Hosts interface {
	// Register inserts h, or updates the host of that name: its
	// advertise URL, capacity, StartedAt, LastSeen, SecretHash,
	// CertFingerprint and Underlay; a removed host that
	// registers again is active, an active or draining one keeps its
	// state. It sets h.ID, h.State and h.CreatedAt.
	Register(h *Host) error
	Get(name string) (*Host, error)
	// List returns every host, removed ones too, ordered by ID.
	List() ([]Host, error)
	// Touch sets the host's LastSeen (its heartbeat).
	Touch(name string, at time.Time) error
	// SetState sets the host's State: HostActive, HostDraining or
	// HostRemoved (anything else is ErrInvalid).
	SetState(name, state string) error
	// SecretHash returns the SHA-256 of the host's credential secret
	// (empty when it registered none): what a peer's request is checked
	// against, on every request, so it reads one column.
	SecretHash(name string) ([]byte, error)
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
	Kernel  string
	Initrd  string
	Cmdline string
	// KernelSHA256/KernelSize and InitrdSHA256/InitrdSize are the boot
	// files' content hashes (hostlink.HashFile) and lengths, recorded at
	// import: the files never change, so a host lacking them pulls them
	// by hash as it pulls a frozen layer. Empty for no file, or for a
	// template imported before hashes were recorded.
	KernelSHA256 string
	KernelSize   int64
	InitrdSHA256 string
	InitrdSize   int64
	// UserData is the cloud-init user-data put in its VMs' seeds (nil is
	// none); NoSeed opts its VMs out of a seed altogether.
	UserData  []byte
	NoSeed    bool
	CreatedAt time.Time
	// WorkspaceID and OwnerID place the object (see identity.go): 0 is
	// none (an object made before workspaces existed, or the system's).
	// Create writes them; Objects.SetOwnership changes them.
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
	// SHA256 is the hex digest of a frozen layer's file (hostlink.HashFile),
	// by which hosts pull it from each other; Size is the file's length in
	// bytes. Both are zero for a writable layer, and set when it is frozen.
	SHA256    string
	Size      int64
	CreatedAt time.Time
	// A shortcut layer (issue 15) is a frozen layer written to read
	// exactly as a run of frozen layers, backed by the run's parent
	// (ParentID), so that a deep chain reads through one layer. ShortcutOf
	// is the run's top and ShortcutBottom its lowest layer (ids kept
	// after the run is released); ShortcutLayers is how many layers of
	// the clone history it stands for (what the chain limit counts). All
	// zero on other layers.
	ShortcutOf, ShortcutBottom int64
	ShortcutLayers             int
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
	// Create writes them; Objects.SetOwnership changes them.
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
	// FenceAllow is a fenced deployment's egress allow-list, canonical
	// entries separated by commas ("" is none; fence.ParseAllowList
	// reads it). Update writes it, with FencePolicy.
	FenceAllow string
	// InstantOf names the configuration whose saved memory state this one
	// was cloned with ("" for all others): it keeps that configuration's
	// MACs and addresses, so it is deployed fenced only. Written by
	// Create; Update leaves it.
	InstantOf string
	// LastError is the reason of the last failure (state failed).
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
	VMs       []VM
	// WorkspaceID and OwnerID place the object (see identity.go): 0 is
	// none (an object made before workspaces existed, or the system's).
	// Create writes them; Objects.SetOwnership changes them.
	WorkspaceID int64
	OwnerID     int64
	// Host is the name of the host (see Host) the configuration was last
	// deployed on: where its VMs run while it is deployed, and its saved
	// states and writable layers stay. "" is never deployed, or deployed
	// before hosts were recorded. Configs.Create and Configs.Update write it.
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
	// Host is the host the VM runs on in a spread deployment; "" is the
	// configuration's own host.
	Host string
	// InstanceID is the cloud-init instance-id of the VM's seed: made when
	// the VM is, new for every copy (clone, checkout, restore), never
	// copied; UpdateVM writes it.
	InstanceID string
	// Hostname is the VM's host name as set; "" is the default (VM-CONFIG).
	Hostname string
	Disks    []Disk
	NICs     []NIC
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
	// Host is the host whose data dir the files are in: only its daemon
	// recovers the entry ("" for a daemon without a host name).
	Host string
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
	// Create writes them; Objects.SetOwnership changes them.
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
	// LadderStep is the last step of a graduated lease policy the
	// reaper took for the current (or last) deployment ("" none);
	// LadderExpires the expiry the ladder counts from (zero: the running
	// DeployExpires, or, with a step, cancelled by an extension); LadderAt
	// when the step was taken.
	LadderStep    string
	LadderExpires time.Time
	LadderAt      time.Time
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
	// SecretHash is the SHA-256 of its host credential's secret;
	// CertFingerprint its TLS certificate's ("SHA256:hex"), which peers
	// pin; Underlay the address its VXLAN tunnels of spread fences use
	// ("" when it has none).
	SecretHash      []byte
	CertFingerprint string
	Underlay        string
}
