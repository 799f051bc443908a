// Package wire holds the JSON shapes of Stagehand's REST API (/api/v1):
// request bodies, resources and the error body. It is shared by the server
// (internal/api), the client and the CLI's -o json output, and depends on
// nothing else in Stagehand so that tools can import it alone.
package wire

import "time"

// APIPrefix is the path prefix of every endpoint.
const APIPrefix = "/api/v1"

// Workspaces: every object a request makes goes to the workspace its
// request names in "workspace" ("ws" in organization default, or
// "org/ws"): the body's field for a JSON request, the query parameter
// for an upload (wire/uploads.go), never both. Empty is the caller's
// default workspace (else default/main) for a new object, the source's
// workspace for a copy (clone, capture, checkout, archive, restore).
// Lists take ?workspace= to show one workspace.

// TemplateRequest is the body of POST /templates. Paths are read by the
// daemon, so they must be absolute on the daemon's host.
type TemplateRequest struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Disks       []string `json:"disks"`
	Format      string   `json:"format,omitempty"` // "raw", "qcow2" or "" to detect
	CPUs        int      `json:"cpus,omitempty"`
	MemoryMiB   int      `json:"memory_mib,omitempty"`
	Kernel      string   `json:"kernel,omitempty"`
	Initrd      string   `json:"initrd,omitempty"`
	Cmdline     string   `json:"cmdline,omitempty"`
	Workspace   string   `json:"workspace,omitempty"`
	// UserData is the cloud-init user-data of its VMs' seeds (at most 64
	// KiB; base64 in JSON), NoSeed gives them no seed at all.
	UserData []byte `json:"user_data,omitempty"`
	NoSeed   bool   `json:"no_seed,omitempty"`
}

// Template is a read-only VM image.
type Template struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	CPUs        int     `json:"cpus"`
	MemoryMiB   int     `json:"memory_mib"`
	Disks       []Layer `json:"disks"` // the base layers, in disk order
	Kernel      string  `json:"kernel"`
	Initrd      string  `json:"initrd"`
	Cmdline     string  `json:"cmdline"`
	// Seed says whether its VMs get a cloud-init NoCloud seed;
	// UserDataBytes is the size of the user-data in it (0: none).
	Seed          bool      `json:"seed"`
	UserDataBytes int       `json:"user_data_bytes"`
	CreatedAt     time.Time `json:"created_at"`
	// Workspace is the workspace it belongs to ("ws" in organization
	// default, else "org/ws"; "" for none) and Owner its owner's user
	// name ("" for the system's).
	Workspace string `json:"workspace"`
	Owner     string `json:"owner"`
}

// Layer is one qcow2 file of a disk chain.
type Layer struct {
	ID          int64  `json:"id"`
	Path        string `json:"path"`
	Frozen      bool   `json:"frozen"`
	VirtualSize int64  `json:"virtual_size"`
	ActualSize  int64  `json:"actual_size"` // bytes allocated on the host
	Template    string `json:"template"`    // set on a template's base layer
	// Snapshot names the snapshot that keeps this layer ("CONFIG@NAME"
	// when it is another configuration's).
	Snapshot string `json:"snapshot,omitempty"`
	// Shortcut is set on a shortcut layer: the run of layers it stands
	// for (shortcuts.go).
	Shortcut *ShortcutRun `json:"shortcut,omitempty"`
}

// NetworkRequest is the body of POST /networks.
type NetworkRequest struct {
	Name    string   `json:"name"`
	Subnet  string   `json:"subnet"`
	Gateway string   `json:"gateway,omitempty"`
	Pools   []string `json:"pools"` // "FIRST-LAST"
	DNS     []string `json:"dns,omitempty"`
	// Workspace is where the network goes (see TemplateRequest).
	Workspace string `json:"workspace,omitempty"`
}

// Network is an L2 segment with its pool usage.
type Network struct {
	Name      string    `json:"name"`
	Subnet    string    `json:"subnet"`
	Gateway   string    `json:"gateway"`
	DNS       []string  `json:"dns"`
	Pools     []string  `json:"pools"`
	PoolSize  int       `json:"pool_size"`
	PoolUsed  int       `json:"pool_used"`
	Usage     []IPUsage `json:"usage"` // every held address, in address order
	CreatedAt time.Time `json:"created_at"`
	Workspace string    `json:"workspace"` // see Template
	Owner     string    `json:"owner"`
}

// IP usage kinds.
const (
	IPInternal = "internal" // a NIC's own address, held by its family
	IPExternal = "external" // a fence's outside address
)

// IPUsage says who holds one address of a network.
type IPUsage struct {
	IP      string     `json:"ip"`
	Kind    string     `json:"kind"`
	InPool  bool       `json:"in_pool"`
	Holders []IPHolder `json:"holders"` // internal: every NIC carrying the address
	Holder  string     `json:"holder"`  // external: the fence holding it
}

// IPHolder is one NIC that carries an address.
type IPHolder struct {
	Config string `json:"config"`
	VM     string `json:"vm"`
	NIC    int    `json:"nic"`
}

// ConfigRequest is the body of POST /configs.
type ConfigRequest struct {
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Owner       string      `json:"owner,omitempty"`
	VMs         []VMRequest `json:"vms"`
	// StorageLease overrides the daemon's default storage lease.
	StorageLease string `json:"storage_lease,omitempty"`
	// Workspace is where the configuration goes (see TemplateRequest).
	Workspace string `json:"workspace,omitempty"`
}

// VMRequest describes one VM of a new configuration.
type VMRequest struct {
	Name     string `json:"name"`
	Template string `json:"template"`
	Network  string `json:"network,omitempty"` // "" for a VM without NIC
	IP       string `json:"ip,omitempty"`      // "pool" (default), "dhcp" or an address
	// Hostname is the guest's host name (RFC 1123); "" is VM-CONFIG.
	Hostname string `json:"hostname,omitempty"`
}

// Clone modes.
const (
	CloneLinked = "linked"
	CloneFull   = "full"
)

// CloneRequest is the body of POST /configs/{name}/clone. A linked clone
// answers 201 with the new Config; a full clone answers 202 with its Job and
// a Location header naming the job.
type CloneRequest struct {
	Name string `json:"name"`           // the new configuration
	Mode string `json:"mode,omitempty"` // CloneLinked (default) or CloneFull
	// StorageLease overrides the daemon's default storage lease.
	StorageLease string `json:"storage_lease,omitempty"`
	// Workspace is where the clone goes; "" is the source's workspace.
	Workspace string `json:"workspace,omitempty"`
	// WithState (linked clones only) shares the source's saved memory
	// state: the clone keeps the source's MACs and addresses and its
	// deploy, fenced only, resumes the guests instead of booting them.
	WithState bool `json:"with_state,omitempty"`
}

// SetIPRequest is the body of PUT /configs/{name}/vms/{vm}/nics/{nic}/ip.
type SetIPRequest struct {
	IP string `json:"ip"` // an address, "pool" or "dhcp"
}

// SetHostnameRequest is the body of PUT /configs/{name}/vms/{vm}/hostname:
// the guest's host name (RFC 1123), or "" for the default, VM-CONFIG. The
// guest sees it at the configuration's next deploy.
type SetHostnameRequest struct {
	Hostname string `json:"hostname"`
}

// Fence policies of a fenced deploy.
const (
	FenceBlock = "block"  // nothing crosses the fence
	FenceOut   = "out"    // VMs reach outside; nothing opens connections in
	FenceInOut = "in-out" // both ways through the external IPs (default)
)

// DeployRequest is the body of POST /configs/{name}/deploy; an empty body
// deploys unfenced. The answer is 200 with the deployed Config.
type DeployRequest struct {
	Fenced      bool   `json:"fenced"`
	FencePolicy string `json:"fence_policy,omitempty"` // Fence*, only with fenced; "" means FenceInOut
	// DeployLease is this deployment's lease (see Lease); it also becomes
	// the configuration's setting. "" keeps the setting.
	DeployLease string `json:"deploy_lease,omitempty"`
	// Host, when set, is the only host placement considers; Explain asks
	// for every host's verdict in the answer's Placement.
	Host    string `json:"host,omitempty"`
	Explain bool   `json:"explain,omitempty"`
	// Spread, fenced only, places each VM on its own host (the home first)
	// and spans the fence over them; the answer's Placement has VMs.
	Spread bool `json:"spread,omitempty"`
	// Allow is the egress allow-list of a fenced deploy with policy out
	// or in-out, CIDR[:PORT[/tcp|udp]] each (at most 64): the VMs may open
	// connections only to these destinations. Not with block.
	Allow []string `json:"allow,omitempty"`
}

// MoveRequest is the body of POST /configs/{name}/move: the undeployed
// configuration's tops (and the frozen layers Host lacks) move to Host,
// which becomes its home. The answer is 200 with the Config.
type MoveRequest struct {
	Host string `json:"host"`
}

// Placement is where a deploy placed a configuration and why.
type Placement struct {
	Host string `json:"host"`
	// Moved: it moved there from its home first, pulling MovedBytes.
	Moved      bool      `json:"moved"`
	MovedBytes int64     `json:"moved_bytes"`
	Verdicts   []Verdict `json:"verdicts"`
	// VMs are a spread deploy's placements, one per VM.
	VMs []VMPlacement `json:"vms,omitempty"`
}

// VMPlacement is where a spread deploy placed one VM, with every host's
// verdict on it, best first.
type VMPlacement struct {
	VM       string    `json:"vm"`
	Host     string    `json:"host"`
	Verdicts []Verdict `json:"verdicts"`
}

// Verdict is placement's finding about one host, best first; Text is
// the verdict on one line, as `config deploy --explain` prints it.
type Verdict struct {
	Host          string `json:"host"`
	Fits          bool   `json:"fits"`
	Why           string `json:"why,omitempty"`
	FreeMemoryMiB int    `json:"free_memory_mib"`
	FreeCPUs      int    `json:"free_cpus"`
	HeldLayers    int    `json:"held_layers"`
	MissingBytes  int64  `json:"missing_bytes"`
	Text          string `json:"text"`
}

// UndeployRequest is the body of POST /configs/{name}/undeploy; an empty
// body discards the VMs' state. The answer is 200 with the Config.
type UndeployRequest struct {
	// SaveState suspends the VMs to state files that the next deploy
	// resumes; false powers them off.
	SaveState bool `json:"save_state"`
}

// VM actions: POST /configs/{name}/vms/{vm}/{action}, answered with 200
// and the Config.
const (
	VMStop  = "stop"  // ACPI power-off request; the guest shuts down
	VMStart = "start" // start a stopped VM
	VMReset = "reset" // hard reset
)

// VM states while the configuration is deployed or has been.
const (
	VMRunning = "running"
	VMStopped = "stopped"
	VMSaved   = "saved" // suspended to a state file; the next deploy resumes it
)

// ConsoleProtocol is the Upgrade token of GET
// /configs/{name}/vms/{vm}/console. The request carries "Connection:
// Upgrade" and "Upgrade: stagehand-console"; the daemon answers 101
// Switching Protocols and from then on the connection carries the VM's
// serial console as raw bytes both ways, until either side closes. Errors
// before the upgrade are ordinary JSON error answers.
const ConsoleProtocol = "stagehand-console"

// Config is a configuration: a named group of VMs.
type Config struct {
	Name string `json:"name"`
	// Kind is KindConfig, or KindLibrary for a library entry.
	Kind        string    `json:"kind"`
	Lease       Lease     `json:"lease"`
	Description string    `json:"description"`
	Owner       string    `json:"owner"`
	Workspace   string    `json:"workspace"` // see Template
	State       string    `json:"state"`
	Fenced      bool      `json:"fenced"`
	FencePolicy string    `json:"fence_policy"`
	LastError   string    `json:"last_error"`
	Host        string    `json:"host"` // its home: the host holding its tops, where it runs
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	VMs         []VM      `json:"vms"`
	// Placement is set in a deploy's answer when asked to explain, or
	// when the configuration moved to be deployed.
	Placement *Placement `json:"placement,omitempty"`
	// Egress is a fenced deployment's allow-list and its refused count
	// (config show only); absent without one.
	Egress *Egress `json:"egress,omitempty"`
}

// VM is one machine of a configuration.
type VM struct {
	Name          string `json:"name"`
	State         string `json:"state"`
	PID           int    `json:"pid"`             // the QEMU process while running, else 0
	HasSavedState bool   `json:"has_saved_state"` // the next deploy resumes a saved state
	Template      string `json:"template"`
	// Hostname and InstanceID are what its cloud-init seed says: the
	// instance-id is new for every copy of the VM.
	Hostname   string `json:"hostname"`
	InstanceID string `json:"instance_id"`
	// Host is the host it runs on: the configuration's home, or another
	// host of a spread deployment.
	Host      string `json:"host"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Disks     []Disk `json:"disks"`
	NICs      []NIC  `json:"nics"`
}

// Disk is one VM disk: its top layer and its chain.
type Disk struct {
	Index int      `json:"index"`
	Path  string   `json:"path"`  // the top layer
	Chain []string `json:"chain"` // layer paths, top first, down to the base
}

// NIC is one network interface of a VM.
type NIC struct {
	Index      int    `json:"index"`
	Network    string `json:"network"`
	MAC        string `json:"mac"`
	IPMode     string `json:"ip_mode"` // "pool", "manual" or "dhcp"
	IP         string `json:"ip"`
	ExternalIP string `json:"external_ip"` // while deployed fenced
}

// Job states.
const (
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCanceled  = "canceled"
)

// Job is a snapshot of a background operation (full clone, consolidate).
type Job struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Subject string    `json:"subject"`
	State   string    `json:"state"`
	Done    int64     `json:"done"`  // bytes done
	Total   int64     `json:"total"` // bytes in all; 0 while unknown
	Error   string    `json:"error"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
}

// DoctorReport lists what disagrees between the store and the files, and
// how VMs are accelerated.
type DoctorReport struct {
	Problems []Problem `json:"problems"`
	Checked  int       `json:"checked"` // layers checked
	// ImageChecks is how many of them qemu-img check read this time; the
	// others were unchanged since they last passed.
	ImageChecks int `json:"image_checks"`
	// Accel is the accelerator VMs run with ("kvm" or "tcg") and
	// AccelReason why the daemon chose it.
	Accel       string `json:"accel"`
	AccelReason string `json:"accel_reason"`
}

// Problem is one finding of the doctor.
type Problem struct {
	Kind       string `json:"kind"`
	Subject    string `json:"subject"`
	Detail     string `json:"detail"`
	Repaired   bool   `json:"repaired"`
	Repairable bool   `json:"repairable"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"` // "ok"
}

// Error kinds, one per errdefs kind plus internal.
const (
	KindNotFound    = "not_found"
	KindConflict    = "conflict"
	KindInvalid     = "invalid"
	KindUnavailable = "unavailable"
	KindCanceled    = "canceled"
	// KindUnauthenticated: no valid credentials (401); KindForbidden: the
	// caller may see the object but not do this to it (403).
	KindUnauthenticated = "unauthenticated"
	KindForbidden       = "forbidden"
	KindInternal        = "internal"
)

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"` // one line, for people
	Kind  string `json:"kind"`  // one of the Kind* values, for programs
}
