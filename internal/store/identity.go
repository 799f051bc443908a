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

// Viewer is who a list is filtered for. Viewers.Load builds it from the
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
// (Objects.Access).
type Access struct {
	Object ObjectRef
	// Viewer has, of the user's memberships, only the one in the
	// object's workspace (if any).
	Viewer Viewer
	// Shares are the object's shares that reach the user: by name or
	// through one of its groups.
	Shares []Share
}

// The directory's accessors of Tx. Conventions are Tx's.

// Orgs: organizations and their administrators. Delete refuses while the
// organization has workspaces; its groups and administrators go with it.
// AddAdmin of an admin is a no-op.
type Orgs interface {
	Create(o *Org) error
	Get(name string) (*Org, error)
	GetByID(id int64) (*Org, error)
	List() ([]Org, error)
	Delete(id int64) error
	AddAdmin(orgID, userID int64) error
	RemoveAdmin(orgID, userID int64) error
	// Admins are the users who administer orgID; AdministeredBy the
	// organizations userID administers.
	Admins(orgID int64) ([]User, error)
	AdministeredBy(userID int64) ([]Org, error)
}

// Workspaces. List(0) lists those of every organization. Update writes
// Name and Kind. Delete refuses while an object belongs to the workspace;
// its memberships go with it.
type Workspaces interface {
	Create(w *Workspace) error
	Get(orgID int64, name string) (*Workspace, error)
	GetByID(id int64) (*Workspace, error)
	List(orgID int64) ([]Workspace, error)
	Update(w *Workspace) error
	Delete(id int64) error
}

// Users. Update writes every field but ID and CreatedAt. Delete refuses
// while the user owns objects; the user's memberships, group memberships,
// administrations, tokens, shares and quota go with them.
type Users interface {
	Create(u *User) error
	Get(name string) (*User, error)
	GetByID(id int64) (*User, error)
	GetByEmail(email string) (*User, error)
	List() ([]User, error)
	Update(u *User) error
	Delete(id int64) error
}

// Groups and their members. List(0) lists those of every organization.
// AddMember of a member is a no-op.
type Groups interface {
	Create(g *Group) error
	Get(orgID int64, name string) (*Group, error)
	GetByID(id int64) (*Group, error)
	List(orgID int64) ([]Group, error)
	Delete(id int64) error
	AddMember(groupID, userID int64) error
	RemoveMember(groupID, userID int64) error
	// Members are the users of groupID; OfUser the groups of userID.
	Members(groupID int64) ([]User, error)
	OfUser(userID int64) ([]Group, error)
}

// Memberships: one per (user, workspace). Put inserts it or replaces its
// role. Lists are ordered by workspace id (OfUser) or user id
// (OfWorkspace).
type Memberships interface {
	Put(m *Membership) error
	Get(userID, workspaceID int64) (*Membership, error)
	Delete(userID, workspaceID int64) error
	OfUser(userID int64) ([]Membership, error)
	OfWorkspace(workspaceID int64) ([]Membership, error)
}

// Tokens, ordered by CreatedAt then ID in List. Revoke keeps the first
// revocation time; Touch sets LastUsedAt. DeleteExpired deletes the
// tokens whose ExpiresAt is set and not after now, and returns how many.
type Tokens interface {
	Create(tk *Token) error
	Get(id string) (*Token, error)
	List(userID int64) ([]Token, error)
	Revoke(id string, at time.Time) error
	Touch(id string, at time.Time) error
	DeleteExpired(now time.Time) (int64, error)
}

// Shares. Put inserts the share or replaces the level of the one the
// grantee has on the object, and sets s.ID (and CreatedAt when new).
// Remove takes exactly one of userID and groupID.
type Shares interface {
	Put(s *Share) error
	Remove(objectKind string, objectID, userID, groupID int64) error
	// Of lists the shares of one object; ToUser and ToGroup those that
	// name a grantee.
	Of(objectKind string, objectID int64) ([]Share, error)
	ToUser(userID int64) ([]Share, error)
	ToGroup(groupID int64) ([]Share, error)
}

// Quotas. Get of a scope without one is ErrNotFound (no limit). Set
// inserts or replaces. Use counts, for a user the objects they own and for
// a workspace the objects in it: stored VMs (the VMs of configurations
// and library entries), deployed VMs and their vCPUs and memory (VMs of
// configurations deploying, deployed or undeploying), and disk: the
// virtual sizes of the stored VMs' disks (their top layers; the store
// does not know allocated bytes) plus the sizes of archives.
type Quotas interface {
	Set(q *Quota) error
	Get(scope string, scopeID int64) (*Quota, error)
	Delete(scope string, scopeID int64) error
	Use(scope string, scopeID int64) (QuotaUsage, error)
}

// Viewers read what the visibility rule needs of a user. LoadIn reads the
// same as Load but keeps in Workspaces only the membership in workspaceID
// (if any): what a decision on one object of that workspace reads,
// whatever the number of the user's memberships.
type Viewers interface {
	Load(userID int64) (*Viewer, error)
	LoadIn(userID, workspaceID int64) (*Viewer, error)
}

// Objects are the objects of a workspace (Object*; library entries are
// ObjectConfig) as placement and permission decisions see them.
type Objects interface {
	// SetOwnership moves an object to a workspace and owner (0: none).
	SetOwnership(objectKind string, objectID, workspaceID, ownerID int64) error
	// Ref looks up the object of objectKind named name: ErrNotFound
	// when there is none, ErrInvalid for an unknown kind. It reads one
	// row, where a Get would read the whole object (a configuration's
	// VMs, disks and NICs).
	Ref(objectKind, name string) (ObjectRef, error)
	// Access reads, in one statement, what deciding an action of userID
	// on the object of objectKind named name reads: the object as Ref
	// finds it, the user's viewer as Viewers.LoadIn(userID, the object's
	// workspace) loads it, and the object's shares that name the user or
	// one of its groups, ordered by ID. ErrNotFound when the object or
	// the user does not exist; ErrInvalid for an unknown kind.
	Access(userID int64, objectKind, name string) (*Access, error)
	// Visible answers the rule of the Visible lists for one object
	// (false when it does not exist).
	Visible(v Viewer, objectKind string, objectID int64) (bool, error)
}

// Visible lists are filtered, in their query, to what v may see, ordered
// by ID like their unfiltered forms. An object is visible to v when v is
// a system administrator; or administers the organization of the object's
// workspace; or is a member of the object's workspace and the workspace is
// shared or v owns the object; or a share on the object names v or one of
// v's groups.
type Visible interface {
	Configs(v Viewer) ([]Config, error)
	Templates(v Viewer) ([]Template, error)
	Networks(v Viewer) ([]Network, error)
	Archives(v Viewer) ([]Archive, error)
	// Events is Events.List filtered, in its query, to the events f
	// selects; Event answers the same for the event with id (false when
	// there is none).
	Events(f EventFilter, afterID int64, limit int) ([]Event, error)
	Event(f EventFilter, id int64) (bool, error)
}

// EventFilter selects the events one reader sees: those Actor caused, and
// those whose object (Event.Object "config" or "library", "template",
// "network" or "archive", named by Event.Subject) exists and is visible to
// Viewer by the rule of Visible. An event names its object, not
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
