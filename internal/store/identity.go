package store

import "time"

// Who is who, and who may see what (schema version 5).
//
// Organizations contain workspaces and groups. Users are members of
// workspaces with a role, administrators of organizations, and members of
// groups. Templates, networks, configurations (library entries included)
// and archives carry a WorkspaceID and an OwnerID. Owners share objects
// with users or groups at a level. The store keeps these records and
// answers "what may this viewer see" in its queries; what each role or
// share level allows is decided above it (internal/auth).
//
// A new store holds the organization DefaultOrg with its shared workspace
// MainWorkspace; objects that existed before version 5 were placed in it
// with no owner (the system's).

// The organization and workspace every store starts with.
const (
	DefaultOrg    = "default"
	MainWorkspace = "main"
)

// Workspace kinds: in a shared workspace members see each other's objects;
// in a private one each member sees their own (and what is shared with them).
const (
	WorkspaceShared  = "shared"
	WorkspacePrivate = "private"
)

// Token kinds.
const (
	TokenAPI     = "api"     // made by `token create`, for scripts and the CLI
	TokenSession = "session" // made by a login, carried in a cookie
	TokenConsole = "console" // a console link: the consoles of one VM only
)

// Share levels, from most to least.
const (
	ShareFull    = "full"
	ShareChange  = "change"
	ShareRead    = "read"
	ShareConsole = "console"
)

// Object kinds that belong to a workspace and can be shared. Library
// entries are configurations (Config.Kind KindLibrary) and are shared as
// ObjectConfig: both kinds live in one table with one id space.
const (
	ObjectConfig   = "config"
	ObjectTemplate = "template"
	ObjectNetwork  = "network"
	ObjectArchive  = "archive"
)

// Quota scopes.
const (
	QuotaScopeUser      = "user"
	QuotaScopeWorkspace = "workspace"
)

// Org is an organization. Name is unique.
type Org struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

// Workspace belongs to one organization; Name is unique in it.
type Workspace struct {
	ID        int64
	OrgID     int64
	Name      string
	Kind      string // WorkspaceShared or WorkspacePrivate
	CreatedAt time.Time
}

// User is a person or a script. Name is unique; Email is unique when set
// (compared without case).
type User struct {
	ID          int64
	Name        string
	Email       string // "" for none
	DisplayName string
	// PasswordHash is the encoded hash (argon2id or bcrypt, with its
	// parameters); "" means the user cannot log in with a password.
	PasswordHash string
	Disabled     bool
	// SystemAdmin may do everything everywhere (the first-start admin).
	SystemAdmin bool
	// DefaultWorkspaceID is where the user's new objects go when no
	// workspace is named; 0 for none. Deleting the workspace clears it.
	DefaultWorkspaceID int64
	CreatedAt          time.Time
}

// Group is a named set of users of one organization; Name is unique in it.
type Group struct {
	ID        int64
	OrgID     int64
	Name      string
	CreatedAt time.Time
}

// Membership gives a user a role in a workspace; one per pair. The store
// does not interpret Role (internal/auth owns the roles); it must be set.
type Membership struct {
	UserID      int64
	WorkspaceID int64
	Role        string
}

// Token is a credential: the caller presents ID and a secret, and the
// store keeps only Hash, the secret's hash. Zero times mean never/none.
type Token struct {
	ID         string // public, unique, chosen by the caller
	UserID     int64
	Hash       []byte
	Kind       string // TokenAPI or TokenSession
	Name       string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time
	RevokedAt  time.Time
	// A restricted token acts only in RestrictWorkspaceID (0: anywhere)
	// and with at most RestrictRole ("": its user's roles). Deleting the
	// workspace deletes the tokens restricted to it.
	RestrictWorkspaceID int64
	RestrictRole        string
	// A console token (TokenConsole, a console link) opens the consoles
	// of VM ConsoleVM of configuration ConsoleConfigID and nothing else;
	// both are set on it and only on it. Deleting the configuration
	// deletes its links.
	ConsoleConfigID int64
	ConsoleVM       string
}

// Share gives a user (UserID) or a group (GroupID), exactly one of them,
// a level of access to one object. There is at most one share per object
// and grantee; deleting the object, the user or the group deletes it.
type Share struct {
	ID         int64
	ObjectKind string // Object*
	ObjectID   int64
	UserID     int64
	GroupID    int64
	Level      string // Share*
	CreatedAt  time.Time
}

// Quota limits what a user (the objects they own) or a workspace (the
// objects in it) may hold. A limit of 0 means no limit on that resource.
type Quota struct {
	Scope       string // QuotaScopeUser or QuotaScopeWorkspace
	ScopeID     int64  // the user's or the workspace's id
	StoredVMs   int64
	DeployedVMs int64
	VCPUs       int64
	MemoryMiB   int64
	DiskGiB     int64
}

// QuotaUsage is what a scope holds now, counted as QuotaUse documents.
type QuotaUsage struct {
	StoredVMs   int64
	DeployedVMs int64
	VCPUs       int64
	MemoryMiB   int64
	DiskGiB     int64 // DiskBytes rounded up to whole GiB
	DiskBytes   int64
}

// Viewer is who a list is filtered for. LoadViewer builds it from the
// records; a caller may narrow it (a token restricted to one workspace
// keeps only that workspace) but must not widen it.
type Viewer struct {
	UserID      int64
	SystemAdmin bool
	// AdminOfOrgs are the organizations the user administers.
	AdminOfOrgs []int64
	// Workspaces are the user's memberships.
	Workspaces []ViewerWorkspace
	// GroupIDs are the groups the user is a member of.
	GroupIDs []int64
}

// ViewerWorkspace is one membership of a Viewer, with what the visibility
// rule needs of its workspace.
type ViewerWorkspace struct {
	ID    int64
	OrgID int64
	Kind  string // WorkspaceShared or WorkspacePrivate
	Role  string
}

// ObjectRef is what deciding an action on one object needs of it: where it
// is and who owns it, without the object itself.
type ObjectRef struct {
	ID            int64
	WorkspaceID   int64  // 0: in no workspace
	OrgID         int64  // the workspace's organization; 0 with no workspace
	OwnerID       int64  // 0: no owner (the system's)
	WorkspaceKind string // WorkspaceShared or WorkspacePrivate; "" with no workspace
}

// Access is what deciding an action of one user on one object reads
// (Directory.LoadAccess).
type Access struct {
	Object ObjectRef
	// Viewer has, of the user's memberships, only the one in the
	// object's workspace (if any).
	Viewer Viewer
	// Shares are the object's shares that reach the user: by name or
	// through one of its groups.
	Shares []Share
}

// Directory is the part of Tx that keeps identities, ownership, sharing
// and quotas. Conventions are Tx's: Create* sets ID and CreatedAt, a
// missing record is ErrNotFound, a taken name or a reference to a missing
// record is ErrConflict, and deleting what is still referred to is
// ErrConflict naming what refers to it.
type Directory interface {
	// Organizations. DeleteOrg refuses while it has workspaces; its
	// groups and administrators go with it.
	CreateOrg(o *Org) error
	GetOrg(name string) (*Org, error)
	GetOrgByID(id int64) (*Org, error)
	ListOrgs() ([]Org, error)
	DeleteOrg(id int64) error

	// Workspaces. ListWorkspaces(0) lists those of every organization.
	// UpdateWorkspace writes Name and Kind. DeleteWorkspace refuses while
	// an object belongs to it; its memberships go with it.
	CreateWorkspace(w *Workspace) error
	GetWorkspace(orgID int64, name string) (*Workspace, error)
	GetWorkspaceByID(id int64) (*Workspace, error)
	ListWorkspaces(orgID int64) ([]Workspace, error)
	UpdateWorkspace(w *Workspace) error
	DeleteWorkspace(id int64) error

	// Users. UpdateUser writes every field but ID and CreatedAt.
	// DeleteUser refuses while the user owns objects; the user's
	// memberships, group memberships, administrations, tokens, shares and
	// quota go with them.
	CreateUser(u *User) error
	GetUser(name string) (*User, error)
	GetUserByID(id int64) (*User, error)
	GetUserByEmail(email string) (*User, error)
	ListUsers() ([]User, error)
	UpdateUser(u *User) error
	DeleteUser(id int64) error

	// Groups and their members. ListGroups(0) lists those of every
	// organization. AddGroupMember of a member is a no-op.
	CreateGroup(g *Group) error
	GetGroup(orgID int64, name string) (*Group, error)
	GetGroupByID(id int64) (*Group, error)
	ListGroups(orgID int64) ([]Group, error)
	DeleteGroup(id int64) error
	AddGroupMember(groupID, userID int64) error
	RemoveGroupMember(groupID, userID int64) error
	ListGroupMembers(groupID int64) ([]User, error)
	ListGroupsOfUser(userID int64) ([]Group, error)

	// Memberships: one per (user, workspace). PutMembership inserts it or
	// replaces its role. Lists are ordered by workspace id (of a user) or
	// user id (of a workspace).
	PutMembership(m *Membership) error
	GetMembership(userID, workspaceID int64) (*Membership, error)
	DeleteMembership(userID, workspaceID int64) error
	ListMembershipsOfUser(userID int64) ([]Membership, error)
	ListMembershipsOfWorkspace(workspaceID int64) ([]Membership, error)

	// Organization administrators. AddOrgAdmin of an admin is a no-op.
	AddOrgAdmin(orgID, userID int64) error
	RemoveOrgAdmin(orgID, userID int64) error
	ListOrgAdmins(orgID int64) ([]User, error)
	ListOrgsAdministeredBy(userID int64) ([]Org, error)

	// Tokens, ordered by CreatedAt then ID in ListTokens. RevokeToken
	// keeps the first revocation time; TouchToken sets LastUsedAt.
	// DeleteExpiredTokens deletes the tokens whose ExpiresAt is set and
	// not after now, and returns how many.
	CreateToken(tk *Token) error
	GetToken(id string) (*Token, error)
	ListTokens(userID int64) ([]Token, error)
	RevokeToken(id string, at time.Time) error
	TouchToken(id string, at time.Time) error
	DeleteExpiredTokens(now time.Time) (int64, error)

	// Shares. PutShare inserts the share or replaces the level of the one
	// the grantee has on the object, and sets s.ID (and CreatedAt when
	// new). RemoveShare takes exactly one of userID and groupID.
	PutShare(s *Share) error
	RemoveShare(objectKind string, objectID, userID, groupID int64) error
	ListSharesOf(objectKind string, objectID int64) ([]Share, error)
	ListSharesToUser(userID int64) ([]Share, error)
	ListSharesToGroup(groupID int64) ([]Share, error)

	// Quotas. GetQuota of a scope without one is ErrNotFound (no limit).
	// SetQuota inserts or replaces. QuotaUse counts, for a user the
	// objects they own and for a workspace the objects in it: stored VMs
	// (the VMs of configurations and library entries), deployed VMs and
	// their vCPUs and memory (VMs of configurations deploying, deployed or
	// undeploying), and disk: the virtual sizes of the stored VMs' disks
	// (their top layers; the store does not know allocated bytes) plus the
	// sizes of archives.
	SetQuota(q *Quota) error
	GetQuota(scope string, scopeID int64) (*Quota, error)
	DeleteQuota(scope string, scopeID int64) error
	QuotaUse(scope string, scopeID int64) (QuotaUsage, error)

	// SetOwnership moves an object (Object*) to a workspace and owner
	// (0: none).
	SetOwnership(objectKind string, objectID, workspaceID, ownerID int64) error

	// LoadViewer reads what the visibility rule needs of a user.
	// LoadViewerIn reads the same but keeps in Workspaces only the
	// membership in workspaceID (if any): what a decision on one object
	// of that workspace reads, whatever the number of the user's
	// memberships.
	LoadViewer(userID int64) (*Viewer, error)
	LoadViewerIn(userID, workspaceID int64) (*Viewer, error)

	// ObjectRef looks up the object of objectKind (Object*; library
	// entries are ObjectConfig) named name: ErrNotFound when there is none,
	// ErrInvalid for an unknown kind. It reads one row, where Get* would
	// read the whole object (a configuration's VMs, disks and NICs).
	ObjectRef(objectKind, name string) (ObjectRef, error)
	// LoadAccess reads, in one statement, what deciding an action of
	// userID on the object of objectKind named name reads: the object as
	// ObjectRef finds it, the user's viewer as LoadViewerIn(userID, the
	// object's workspace) loads it, and the object's shares that name
	// the user or one of its groups, ordered by ID. ErrNotFound when the
	// object or the user does not exist; ErrInvalid for an unknown kind.
	LoadAccess(userID int64, objectKind, name string) (*Access, error)

	// Lists filtered, in their query, to what v may see, ordered by ID
	// like their unfiltered forms. An object is visible to v when v is a
	// system administrator; or administers the organization of the
	// object's workspace; or is a member of the object's workspace and the
	// workspace is shared or v owns the object; or a share on the object
	// names v or one of v's groups. ObjectVisible answers the same rule
	// for one object (false when it does not exist).
	ListConfigsVisible(v Viewer) ([]Config, error)
	ListTemplatesVisible(v Viewer) ([]Template, error)
	ListNetworksVisible(v Viewer) ([]Network, error)
	ListArchivesVisible(v Viewer) ([]Archive, error)
	ObjectVisible(v Viewer, objectKind string, objectID int64) (bool, error)

	// ListEventsVisible is ListEvents filtered, in its query, to the
	// events f selects; EventVisible answers the same for the event with
	// id (false when there is none).
	ListEventsVisible(f EventFilter, afterID int64, limit int) ([]Event, error)
	EventVisible(f EventFilter, id int64) (bool, error)
}

// EventFilter selects the events one reader sees: those Actor caused, and
// those whose object (Event.Object "config" or "library", "template",
// "network" or "archive", named by Event.Subject) exists and is visible to
// Viewer by the rule of the List*Visible. An event names its object, not
// its id: the events of a deleted object are Actor's only, and those of an
// object deleted and made again under its name go with the new one.
type EventFilter struct {
	Actor  string // "": none
	Viewer Viewer
	// Workspace, when not 0, keeps only objects in that workspace (a
	// restricted token).
	Workspace int64
	// NoObjects selects no event by its object: only Actor's.
	NoObjects bool
}
