package auth

import (
	"fmt"
	"math/bits"

	"stagehand/internal/errdefs"
)

// Action names one thing a caller may do, "kind.verb". Every route of the
// API names exactly one action; Decide answers whether the caller may.
type Action string

// The actions. Actions on an object (read, delete, deploy, …) are decided
// on that object; create, import and list on the workspace they act in.
const (
	TemplateRead   Action = "template.read"
	TemplateCreate Action = "template.create"
	TemplateDelete Action = "template.delete"

	NetworkRead   Action = "network.read"
	NetworkCreate Action = "network.create"
	NetworkDelete Action = "network.delete"

	ConfigRead     Action = "config.read"
	ConfigCreate   Action = "config.create"
	ConfigDelete   Action = "config.delete"
	ConfigClone    Action = "config.clone"
	ConfigDeploy   Action = "config.deploy"
	ConfigUndeploy Action = "config.undeploy"
	ConfigPower    Action = "config.vm.power"
	ConfigConsole  Action = "config.console"
	ConfigEdit     Action = "config.edit" // set or change IPs, leases, VM settings
	ConfigShare    Action = "config.share"

	LibraryRead     Action = "library.read"
	LibraryCapture  Action = "library.capture" // decided on the configuration captured
	LibraryCheckout Action = "library.checkout"
	LibraryDelete   Action = "library.delete"

	ArchiveRead    Action = "archive.read"
	ArchiveCreate  Action = "archive.create" // decided on the configuration archived
	ArchiveRestore Action = "archive.restore"
	ArchiveExport  Action = "archive.export"
	ArchiveImport  Action = "archive.import"
	ArchiveDelete  Action = "archive.delete"

	JobRead   Action = "job.read"
	JobCancel Action = "job.cancel"

	EventRead    Action = "event.read"
	DoctorRead   Action = "doctor.read"
	DoctorRepair Action = "doctor.repair"
	CleanupRead  Action = "cleanup.read"
	StatusRead   Action = "status.read"
	// MetricsRead is scraping /metrics: counts over every workspace (the
	// names of configurations, networks and VMs as labels), so it is the
	// system administrator's, in no role row.
	MetricsRead Action = "metrics.read"
	// HostRead and HostAdmin are the hosts of the installation (listing
	// them; draining, undraining, removing one): the system
	// administrator's, in no role row.
	HostRead  Action = "host.read"
	HostAdmin Action = "host.admin"

	UserAdmin      Action = "user.admin"
	OrgAdmin       Action = "org.admin"
	WorkspaceAdmin Action = "workspace.admin" // members, settings; quotas are the org admin's
)

// allActions fixes each action's bit in an actionSet. Order matters only
// for listings.
var allActions = []Action{
	TemplateRead, TemplateCreate, TemplateDelete,
	NetworkRead, NetworkCreate, NetworkDelete,
	ConfigRead, ConfigCreate, ConfigDelete, ConfigClone, ConfigDeploy, ConfigUndeploy,
	ConfigPower, ConfigConsole, ConfigEdit, ConfigShare,
	LibraryRead, LibraryCapture, LibraryCheckout, LibraryDelete,
	ArchiveRead, ArchiveCreate, ArchiveRestore, ArchiveExport, ArchiveImport, ArchiveDelete,
	JobRead, JobCancel,
	EventRead, DoctorRead, DoctorRepair, CleanupRead, StatusRead,
	UserAdmin, OrgAdmin, WorkspaceAdmin,
	MetricsRead,
	HostRead, HostAdmin,
}

// Actions returns every action, for the route table's completeness test
// and for listings.
func Actions() []Action { return append([]Action(nil), allActions...) }

// ParseAction returns the action named s, or an invalid error.
func ParseAction(s string) (Action, error) {
	if _, ok := actionBit[Action(s)]; !ok {
		return "", errdefs.Invalid("action %q: unknown; see stagehand auth actions", s)
	}
	return Action(s), nil
}

// Role is what a membership lets its user do in one workspace. The six
// are Lab Manager's (its Application Developer is our author, Read Only
// our viewer).
type Role string

const (
	RoleAdmin           Role = "admin"
	RoleTemplateCreator Role = "template-creator"
	RoleAuthor          Role = "author"
	RoleUser            Role = "user"
	RoleConsoleOnly     Role = "console-only"
	RoleViewer          Role = "viewer"
)

// roleTable is the literal answer to "what may role R do in its
// workspace". It is written out in full, not built from the role below,
// so each row can be read and reviewed alone; TestRoleTable checks the
// intended inclusions. doctor.*, user.admin and org.admin are in no row:
// they belong to the system administrator (org.admin also to an org's
// admins), never to a workspace membership.
var roleTable = map[Role][]Action{
	// admin runs the workspace: everything in it, its networks and its
	// members, and every object in it even in a private workspace (someone
	// must be able to clean up after a user who left).
	RoleAdmin: {
		TemplateRead, TemplateCreate, TemplateDelete,
		NetworkRead, NetworkCreate, NetworkDelete,
		ConfigRead, ConfigCreate, ConfigDelete, ConfigClone, ConfigDeploy, ConfigUndeploy,
		ConfigPower, ConfigConsole, ConfigEdit, ConfigShare,
		LibraryRead, LibraryCapture, LibraryCheckout, LibraryDelete,
		ArchiveRead, ArchiveCreate, ArchiveRestore, ArchiveExport, ArchiveImport, ArchiveDelete,
		JobRead, JobCancel, EventRead, CleanupRead, StatusRead,
		WorkspaceAdmin,
	},
	// template-creator: an author who also makes and removes templates.
	RoleTemplateCreator: {
		TemplateRead, TemplateCreate, TemplateDelete,
		NetworkRead,
		ConfigRead, ConfigCreate, ConfigDelete, ConfigClone, ConfigDeploy, ConfigUndeploy,
		ConfigPower, ConfigConsole, ConfigEdit, ConfigShare,
		LibraryRead, LibraryCapture, LibraryCheckout, LibraryDelete,
		ArchiveRead, ArchiveCreate, ArchiveRestore, ArchiveExport, ArchiveImport, ArchiveDelete,
		JobRead, JobCancel, EventRead, CleanupRead, StatusRead,
	},
	// author (Lab Manager's Application Developer): a user who also edits
	// configurations (addresses, leases), shares them, captures them to
	// the library and archives, exports, imports and restores them.
	RoleAuthor: {
		TemplateRead,
		NetworkRead,
		ConfigRead, ConfigCreate, ConfigDelete, ConfigClone, ConfigDeploy, ConfigUndeploy,
		ConfigPower, ConfigConsole, ConfigEdit, ConfigShare,
		LibraryRead, LibraryCapture, LibraryCheckout, LibraryDelete,
		ArchiveRead, ArchiveCreate, ArchiveRestore, ArchiveExport, ArchiveImport, ArchiveDelete,
		JobRead, JobCancel, EventRead, CleanupRead, StatusRead,
	},
	// user: makes configurations from templates, clones and library
	// checkouts, runs and deletes them; changes no settings, shares nothing,
	// publishes nothing.
	RoleUser: {
		TemplateRead,
		NetworkRead,
		ConfigRead, ConfigCreate, ConfigDelete, ConfigClone, ConfigDeploy, ConfigUndeploy,
		ConfigPower, ConfigConsole,
		LibraryRead, LibraryCheckout,
		ArchiveRead,
		JobRead, JobCancel, EventRead, CleanupRead, StatusRead,
	},
	// console-only: sees configurations and uses the consoles of their
	// running VMs; nothing else.
	RoleConsoleOnly: {
		ConfigRead, ConfigConsole,
		JobRead, StatusRead,
	},
	// viewer (Lab Manager's Read Only): reads everything in the workspace,
	// changes nothing.
	RoleViewer: {
		TemplateRead,
		NetworkRead,
		ConfigRead,
		LibraryRead,
		ArchiveRead,
		JobRead, EventRead, CleanupRead, StatusRead,
	},
}

// Roles returns the roles, strongest first.
func Roles() []Role {
	return []Role{RoleAdmin, RoleTemplateCreator, RoleAuthor, RoleUser, RoleConsoleOnly, RoleViewer}
}

// ParseRole returns the role named s, or an invalid error.
func ParseRole(s string) (Role, error) {
	if _, ok := roleSets[Role(s)]; !ok {
		return "", errdefs.Invalid("role %q: want one of admin, template-creator, author, user, console-only, viewer", s)
	}
	return Role(s), nil
}

// Allows reports whether the role's row holds a.
func (r Role) Allows(a Action) bool { return roleSets[r].has(a) }

// RoleActions returns the role's row (empty for an unknown role).
func RoleActions(r Role) []Action { return roleSets[r].list() }

// ShareLevel is how far an owner lets another user or group act on one
// object: Lab Manager's Full Control, Change (Read & Write) and Read
// Only, plus console.
type ShareLevel string

const (
	ShareFull    ShareLevel = "full"
	ShareChange  ShareLevel = "change"
	ShareRead    ShareLevel = "read"
	ShareConsole ShareLevel = "console"
)

// readActions are the actions that only look at one object. They make the
// read level, and they are all a share grants outside the object's
// workspace.
var readActions = []Action{TemplateRead, NetworkRead, ConfigRead, LibraryRead, ArchiveRead, JobRead}

// shareTable is the literal set of actions each share level allows on the
// one object shared. Copying (clone, capture, checkout, archive, export,
// restore) is in change, not read: a copy takes the disks' contents out of
// the owner's hands, which is more than looking.
var shareTable = map[ShareLevel][]Action{
	// read: look at the object and its jobs.
	ShareRead: readActions,
	// console: read, and use the consoles of its running VMs.
	ShareConsole: append(append([]Action(nil), readActions...), ConfigConsole),
	// change: everything but deleting the object and sharing it further.
	ShareChange: append(append([]Action(nil), readActions...),
		ConfigConsole, ConfigDeploy, ConfigUndeploy, ConfigPower, ConfigEdit, ConfigClone,
		LibraryCapture, LibraryCheckout, ArchiveCreate, ArchiveRestore, ArchiveExport, JobCancel),
	// full: what its owner may do, deleting and sharing included.
	ShareFull: append(append([]Action(nil), readActions...),
		ConfigConsole, ConfigDeploy, ConfigUndeploy, ConfigPower, ConfigEdit, ConfigClone,
		LibraryCapture, LibraryCheckout, ArchiveCreate, ArchiveRestore, ArchiveExport, JobCancel,
		ConfigDelete, ConfigShare, TemplateDelete, NetworkDelete, LibraryDelete, ArchiveDelete),
}

// ShareLevels returns the share levels, strongest first.
func ShareLevels() []ShareLevel { return []ShareLevel{ShareFull, ShareChange, ShareRead, ShareConsole} }

// ParseShareLevel returns the level named s, or an invalid error.
func ParseShareLevel(s string) (ShareLevel, error) {
	if _, ok := shareSets[ShareLevel(s)]; !ok {
		return "", errdefs.Invalid("share level %q: want full, change, read or console", s)
	}
	return ShareLevel(s), nil
}

// Allows reports whether the level holds a.
func (l ShareLevel) Allows(a Action) bool { return shareSets[l].has(a) }

// ShareActions returns the level's set (empty for an unknown level).
func ShareActions(l ShareLevel) []Action { return shareSets[l].list() }

// actionSet is a set of actions as bits, so that role ∩ share ∩
// restriction is two ANDs in Decide.
type actionSet uint64

var (
	actionBit  = map[Action]actionSet{}
	roleSets   = map[Role]actionSet{}
	shareSets  = map[ShareLevel]actionSet{}
	readSet    actionSet
	everyone   actionSet // actions any signed-in identity may, outside any workspace
	allSet     actionSet
	sysOnlySet actionSet // actions in no role row
)

func init() {
	if len(allActions) > 64 {
		panic("auth: more than 64 actions; widen actionSet")
	}
	for i, a := range allActions {
		if _, dup := actionBit[a]; dup {
			panic(fmt.Sprintf("auth: action %q listed twice", a))
		}
		actionBit[a] = 1 << i
		allSet |= 1 << i
	}
	for r, row := range roleTable {
		roleSets[r] = setOf(row)
	}
	for l, row := range shareTable {
		shareSets[l] = setOf(row)
	}
	readSet = setOf(readActions)
	everyone = setOf([]Action{StatusRead})
	sysOnlySet = allSet
	for _, s := range roleSets {
		sysOnlySet &^= s
	}
}

func setOf(actions []Action) actionSet {
	var s actionSet
	for _, a := range actions {
		bit, ok := actionBit[a]
		if !ok {
			panic(fmt.Sprintf("auth: table names unknown action %q", a))
		}
		s |= bit
	}
	return s
}

func (s actionSet) has(a Action) bool { return s&actionBit[a] != 0 }

func (s actionSet) list() []Action {
	out := make([]Action, 0, bits.OnesCount64(uint64(s)))
	for i, a := range allActions {
		if s&(1<<i) != 0 {
			out = append(out, a)
		}
	}
	return out
}
