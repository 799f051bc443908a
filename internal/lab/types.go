package lab

import (
	"time"

	"stagehand/internal/lab/doctor"
)

// Clone modes.
const (
	ModeLinked = "linked"
	ModeFull   = "full"
)

// TemplateSpec is the input of ImportTemplate.
type TemplateSpec struct {
	Name        string
	Description string
	Disks       []string // host paths of the images to import, in disk order
	Format      string   // "raw", "qcow2" or "" to detect
	CPUs        int      // default 1
	MemoryMiB   int      // default 256
	Kernel      string   // direct kernel boot: host path of the kernel (optional)
	Initrd      string   // host path of the initrd (optional)
	Cmdline     string   // kernel command line (optional)
	// Uploaded files, given instead of the host paths above (which only
	// the system administrator on the unix socket may name, under an
	// import directory; see sources.go): the disks in disk order, the
	// kernel and the initrd. Import closes them.
	DiskUploads  []*Upload
	KernelUpload *Upload
	InitrdUpload *Upload
	// UserData is the cloud-init user-data of its VMs' seeds, or
	// UserDataUpload the same as an upload (at most seed.MaxUserData
	// bytes); NoSeed gives its VMs no seed at all.
	UserData       []byte
	UserDataUpload *Upload
	NoSeed         bool
	// Workspace is where the template goes ("ws" in organization default,
	// or "org/ws"); "" is the caller's default workspace, else default/main.
	Workspace string
}

// NetworkSpec is the input of CreateNetwork.
type NetworkSpec struct {
	Name    string
	Subnet  string   // CIDR, e.g. 10.0.0.0/24
	Gateway string   // default: the first host address of the subnet
	Pools   []string // "FIRST-LAST" ranges inside the subnet
	DNS     []string
	// Workspace is where the network goes (see TemplateSpec.Workspace).
	Workspace string
}

// VMSpec describes one VM of a new configuration.
type VMSpec struct {
	Name     string
	Template string
	Network  string // "" for a VM without NIC
	IP       string // "pool" (default), "dhcp" or an address (manual)
	// Hostname is the guest's host name; "" is the default, VM-CONFIG.
	Hostname string
}

// ConfigSpec is the input of CreateConfig.
type ConfigSpec struct {
	Name        string
	Description string
	Owner       string
	VMs         []VMSpec
	// StorageLease is the configuration's storage lease from its creation:
	// nil means the daemon's default (LeasePolicy.DefaultStorage), 0 never.
	StorageLease *time.Duration
	// Workspace is where the configuration goes (see
	// TemplateSpec.Workspace).
	Workspace string
}

// CreateOptions are the options of the operations that make a new
// configuration, library entry or archive from another: linked and full
// clone, capture, checkout, archive and restore.
type CreateOptions struct {
	// StorageLease is the new object's storage lease from its creation:
	// nil means the daemon's default (LeasePolicy.DefaultStorage), 0 never.
	StorageLease *time.Duration
	// Workspace is where the new object goes ("ws" or "org/ws"); "" is
	// the workspace of the object it is made from.
	Workspace string
	// WithState (clones and library captures) shares the source's saved
	// memory state with the copy: its deploy resumes the guests instead
	// of booting them, fenced only (docs/decisions.md, "Instant fenced
	// copies").
	WithState bool
	// WithSnapshots (archives) carries the configuration's snapshot tree
	// and its VMs' saved states in the archive: its restore has the same
	// snapshots, and its saved VMs resume at their next deploy.
	WithSnapshots bool
}

// TemplateView is a template as shown to users.
type TemplateView struct {
	Name        string
	Description string
	CPUs        int
	MemoryMiB   int
	Disks       []LayerView // the base layers
	Kernel      string
	Initrd      string
	Cmdline     string
	// Seed says whether its VMs get a cloud-init seed; UserDataBytes is
	// the size of the user-data in it (0: none).
	Seed          bool
	UserDataBytes int
	CreatedAt     time.Time
	// Workspace is its workspace ("ws" in organization default, else
	// "org/ws"; "" for none) and Owner its owner's user name ("" for the
	// system's).
	Workspace string
	Owner     string
}

// LayerView is one layer of a chain.
type LayerView struct {
	ID          int64
	Path        string // absolute
	Frozen      bool
	VirtualSize int64
	ActualSize  int64 // allocated bytes on the host
	Template    string
	// Snapshot is the snapshot that names this layer: its name, or
	// "CONFIG@NAME" for another configuration's (a clone from it).
	Snapshot string
	// Shortcut is set on a shortcut layer: the run of layers it stands
	// for (shortcut.go).
	Shortcut *ShortcutView
}

// NetworkView is a network with its pool usage.
type NetworkView struct {
	Name      string
	Subnet    string
	Gateway   string
	DNS       []string
	Pools     []string
	PoolSize  int
	PoolUsed  int
	Usage     []IPUsage // every held address, in address order
	CreatedAt time.Time
	Workspace string // see TemplateView
	Owner     string
}

// IPUsage says who holds one address of a network.
type IPUsage struct {
	IP      string
	Kind    string     // "internal" or "external"
	InPool  bool       // inside one of the pool ranges
	Holders []IPHolder // internal: the family, every NIC carrying the address
	Holder  string     // external: the fence holding it
}

// IPHolder is one NIC that carries an address.
type IPHolder struct {
	Config string
	VM     string
	NIC    int
}

// ConfigView is a configuration as shown to users.
type ConfigView struct {
	Name string
	// Kind is store.KindConfig, or KindLibrary for a library entry.
	Kind        string
	Lease       LeaseView
	Description string
	// Owner is the owning user's name; for an object without one (made
	// before users existed, or by the system) the owner text it was
	// given.
	Owner string
	// Workspace is its workspace (see TemplateView).
	Workspace   string
	State       string
	Fenced      bool
	FencePolicy string
	// Egress is a fenced deployment's allow-list and its refused count;
	// nil without one.
	Egress    *EgressView
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
	VMs       []VMView
	// Host is its home: the host holding its writable tops, where it
	// runs when deployed (store.Config.Host).
	Host string
	// Placement is set by a deploy asked to explain, or that moved it.
	Placement *Placement
}

// VMView is one VM of a configuration.
type VMView struct {
	id            int64 // store ID, for runtime lookups
	Name          string
	State         string
	PID           int  // QEMU process while running
	HasSavedState bool // the next deploy resumes a saved state
	Template      string
	// Hostname and InstanceID are what the VM's cloud-init seed says.
	Hostname   string
	InstanceID string
	// Host is the host the VM runs on (and holds its tops): the
	// configuration's home, or another host of a spread deployment.
	Host      string
	CPUs      int
	MemoryMiB int
	Disks     []DiskView
	NICs      []NICView
}

// DiskView is one disk: its top layer and its chain.
type DiskView struct {
	Index int
	Path  string   // absolute path of the top layer
	Chain []string // absolute layer paths, top first
}

// NICView is one NIC.
type NICView struct {
	Index      int
	Network    string
	MAC        string
	IPMode     string
	IP         string
	ExternalIP string // while deployed fenced
}

// DoctorReport lists what disagrees between the store and the disk.
type DoctorReport = doctor.Report

// Problem is one finding of Doctor.
type Problem = doctor.Problem

// Problem kinds found by Doctor.
const (
	ProblemMissingLayer       = doctor.ProblemMissingLayer
	ProblemOrphanFile         = doctor.ProblemOrphanFile
	ProblemWrongBacking       = doctor.ProblemWrongBacking
	ProblemWritableFrozen     = doctor.ProblemWritableFrozen
	ProblemReadOnlyTop        = doctor.ProblemReadOnlyTop
	ProblemCheckFailed        = doctor.ProblemCheckFailed
	ProblemUnheldIP           = doctor.ProblemUnheldIP
	ProblemSplitFamily        = doctor.ProblemSplitFamily
	ProblemUnfinishedOp       = doctor.ProblemUnfinishedOp
	ProblemUnreferenced       = doctor.ProblemUnreferenced
	ProblemTempFile           = doctor.ProblemTempFile
	ProblemLayerMode          = doctor.ProblemLayerMode
	ProblemMissingArchiveFile = doctor.ProblemMissingArchiveFile
)
