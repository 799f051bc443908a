package wire

import "time"

// The directory: users, organizations, workspaces and their members,
// groups, API tokens, shares, quotas and `auth explain`.
//
// A workspace is named "org/ws", or "ws" for one of organization
// "default"; a group likewise "org/group". Users and organizations have
// names of their own.

// UserRequest is the body of POST /users (201, the User). Password may be
// empty: the user then signs in with a token or OIDC only.
type UserRequest struct {
	Name        string `json:"name"`
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Password    string `json:"password,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	SystemAdmin bool   `json:"system_admin,omitempty"`
	// DefaultWorkspace is where the user's new objects go when they name
	// none ("org/ws" or "ws"); "" for none.
	DefaultWorkspace string `json:"default_workspace,omitempty"`
}

// User is a person or a script. The password hash never leaves the
// daemon; HasPassword says whether there is one.
type User struct {
	Name             string    `json:"name"`
	Email            string    `json:"email"`
	DisplayName      string    `json:"display_name"`
	Disabled         bool      `json:"disabled"`
	SystemAdmin      bool      `json:"system_admin"`
	HasPassword      bool      `json:"has_password"`
	DefaultWorkspace string    `json:"default_workspace"`
	CreatedAt        time.Time `json:"created_at"`
	// Set by GET /users/{name} only.
	Memberships []Membership `json:"memberships,omitempty"`
	Groups      []string     `json:"groups,omitempty"`   // "org/group"
	AdminOf     []string     `json:"admin_of,omitempty"` // organizations
	Quota       *QuotaLimits `json:"quota,omitempty"`    // nil: no limit
	Usage       *QuotaUsage  `json:"usage,omitempty"`
}

// Membership is a user's role in a workspace.
type Membership struct {
	Workspace string `json:"workspace"` // "org/ws"
	User      string `json:"user"`
	Role      string `json:"role"`
}

// UserUpdate is the body of PATCH /users/{name} (200, the User): the
// fields given change, the others stay. A user changes their own Email,
// DisplayName and DefaultWorkspace ("" clears it; else a workspace they
// are a member of); Disabled and SystemAdmin are the system
// administrator's, who changes anyone's.
type UserUpdate struct {
	Email            *string `json:"email,omitempty"`
	DisplayName      *string `json:"display_name,omitempty"`
	DefaultWorkspace *string `json:"default_workspace,omitempty"`
	Disabled         *bool   `json:"disabled,omitempty"`
	SystemAdmin      *bool   `json:"system_admin,omitempty"`
}

// PasswordRequest is the body of PUT /users/{name}/password (204). A user
// changing their own password gives the old one; a system administrator
// setting someone else's does not.
type PasswordRequest struct {
	OldPassword string `json:"old_password,omitempty"`
	Password    string `json:"password"`
}

// OrgRequest is the body of POST /orgs (201, the Org). The new
// organization gets its workspace "main" (shared).
type OrgRequest struct {
	Name string `json:"name"`
}

// Org is an organization with its administrators and workspaces.
type Org struct {
	Name       string    `json:"name"`
	Admins     []string  `json:"admins"`
	Workspaces []string  `json:"workspaces"` // names in the organization
	Groups     []string  `json:"groups"`
	CreatedAt  time.Time `json:"created_at"`
}

// OrgAdminRequest is the body of POST /orgs/{org}/admins (204).
type OrgAdminRequest struct {
	User string `json:"user"`
}

// WorkspaceRequest is the body of POST /workspaces (201, the Workspace).
type WorkspaceRequest struct {
	Org  string `json:"org,omitempty"` // "" for "default"
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"` // WorkspaceShared (default) or WorkspacePrivate
}

// Workspace kinds: in a shared workspace members see each other's
// objects, in a private one each member sees their own and what is shared
// with them.
const (
	WorkspaceShared  = "shared"
	WorkspacePrivate = "private"
)

// Workspace is a workspace; GET /workspaces/{org}/{name} adds its members,
// quota and usage.
type Workspace struct {
	Org       string       `json:"org"`
	Name      string       `json:"name"`
	Kind      string       `json:"kind"`
	CreatedAt time.Time    `json:"created_at"`
	Members   []Membership `json:"members,omitempty"`
	Quota     *QuotaLimits `json:"quota,omitempty"` // nil: no limit
	Usage     *QuotaUsage  `json:"usage,omitempty"`
}

// MemberRequest is the body of POST /workspaces/{org}/{name}/members
// (204): it adds the user with the role, or changes their role.
type MemberRequest struct {
	User string `json:"user"`
	Role string `json:"role"` // admin, template-creator, author, user, console-only, viewer
}

// Quota scopes.
const (
	QuotaUser      = "user"
	QuotaWorkspace = "workspace"
)

// QuotaRequest is the body of PUT /quotas (200, the QuotaLimits set): the
// limits of one user (the objects they own) or one workspace (the objects
// in it). A limit of 0 means none; all zero removes the quota.
type QuotaRequest struct {
	Scope  string `json:"scope"`  // QuotaUser or QuotaWorkspace
	Target string `json:"target"` // the user's name, or the workspace "org/ws"
	QuotaLimits
}

// QuotaLimits are the limits of a quota; 0 is no limit.
type QuotaLimits struct {
	StoredVMs   int64 `json:"stored_vms"`
	DeployedVMs int64 `json:"deployed_vms"`
	VCPUs       int64 `json:"vcpus"`
	MemoryMiB   int64 `json:"memory_mib"`
	DiskGiB     int64 `json:"disk_gib"`
}

// QuotaUsage is what a user or workspace holds now, in the units of the
// limits.
type QuotaUsage struct {
	StoredVMs   int64 `json:"stored_vms"`
	DeployedVMs int64 `json:"deployed_vms"`
	VCPUs       int64 `json:"vcpus"`
	MemoryMiB   int64 `json:"memory_mib"`
	DiskGiB     int64 `json:"disk_gib"`
}

// TokenRequest is the body of POST /tokens (201, a NewToken).
type TokenRequest struct {
	Name string `json:"name"`
	// User is whose token it is: "" for the caller's own; another user's
	// only for a system administrator.
	User string `json:"user,omitempty"`
	// ExpiresIn is a duration ("720h", "30d"); "" for the default (90
	// days). A token always expires.
	ExpiresIn string `json:"expires_in,omitempty"`
	// Workspace restricts the token to one workspace ("org/ws" or "ws"),
	// MaxRole to at most that role's actions there; both or neither.
	Workspace string `json:"workspace,omitempty"`
	MaxRole   string `json:"max_role,omitempty"`
}

// Token states.
const (
	TokenActive  = "active"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// Token is an API token as listed: never its secret nor its hash.
type Token struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	User       string    `json:"user"`
	State      string    `json:"state"` // Token*
	Workspace  string    `json:"workspace,omitempty"`
	MaxRole    string    `json:"max_role,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastUsedAt time.Time `json:"last_used_at"` // zero: never used
	RevokedAt  time.Time `json:"revoked_at"`   // zero: not revoked
}

// NewToken is the answer to POST /tokens: the token itself, given this
// once (the daemon keeps only its hash), and its record.
type NewToken struct {
	Token  string `json:"token"`
	Record Token  `json:"record"`
}

// ShareRequest is the body of POST /configs/{name}/shares (200, the
// Share): it shares the configuration with a user ("alice") or a group
// ("group:testers", or "group:org/testers" for one of another
// organization than the configuration's), or changes the level of that
// grantee's share.
type ShareRequest struct {
	With  string `json:"with"`
	Level string `json:"level"` // full, change, read or console
}

// Share is one grant on a configuration. With is as in ShareRequest, the
// group always as "group:org/name".
type Share struct {
	With      string    `json:"with"`
	Level     string    `json:"level"`
	CreatedAt time.Time `json:"created_at"`
}

// GroupRequest is the body of POST /groups (201, the Group).
type GroupRequest struct {
	Org  string `json:"org,omitempty"` // "" for "default"
	Name string `json:"name"`
}

// Group is a named set of users of one organization.
type Group struct {
	Org       string    `json:"org"`
	Name      string    `json:"name"`
	Members   []string  `json:"members"`
	CreatedAt time.Time `json:"created_at"`
}

// GroupMemberRequest is the body of POST /groups/{org}/{name}/members (204).
type GroupMemberRequest struct {
	User string `json:"user"`
}

// ExplainRequest is the body of POST /auth/explain: may User do Action
// to Object ("config/web", "template/base", "workspace/org/ws" for an
// action in a workspace itself, "system" for a system-wide one)?
type ExplainRequest struct {
	User   string `json:"user"`
	Action string `json:"action"`
	Object string `json:"object"`
}

// Explanation is the answer to POST /auth/explain. Visible says whether
// the user may know the object exists: a refusal answers them 404 when
// not, 403 when so. Reason names the row that decided.
type Explanation struct {
	Allowed bool   `json:"allowed"`
	Visible bool   `json:"visible"`
	Reason  string `json:"reason"`
}
