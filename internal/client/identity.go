package client

import (
	"context"
	"net/http"
	"strings"

	"stagehand/internal/api/wire"
)

// The directory's endpoints: users, organizations, workspaces, groups,
// tokens, shares, quotas and auth explain.

// Create creates a user.
func (c Users) Create(ctx context.Context, req wire.UserRequest) (*wire.User, error) {
	return call[wire.User](ctx, c.t, http.MethodPost, path("users"), nil, req)
}

// List returns the users.
func (c Users) List(ctx context.Context) ([]wire.User, error) {
	return list[wire.User](ctx, c.t, path("users"), nil)
}

// Get returns one user with their memberships, groups, quota and usage.
func (c Users) Get(ctx context.Context, name string) (*wire.User, error) {
	return call[wire.User](ctx, c.t, http.MethodGet, path("users", name), nil, nil)
}

// Update changes the fields of a user that req gives (the others stay)
// and returns the user.
func (c Users) Update(ctx context.Context, name string, req wire.UserUpdate) (*wire.User, error) {
	return call[wire.User](ctx, c.t, http.MethodPatch, path("users", name), nil, req)
}

// Delete deletes a user who owns nothing.
func (c Users) Delete(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("users", name), nil, nil, nil)
}

// SetPassword sets a user's password.
func (c Users) SetPassword(ctx context.Context, name string, req wire.PasswordRequest) error {
	return c.t.do(ctx, http.MethodPut, path("users", name, "password"), nil, req, nil)
}

// Create creates an organization with its workspace "main".
func (c Orgs) Create(ctx context.Context, req wire.OrgRequest) (*wire.Org, error) {
	return call[wire.Org](ctx, c.t, http.MethodPost, path("orgs"), nil, req)
}

// List returns the organizations.
func (c Orgs) List(ctx context.Context) ([]wire.Org, error) {
	return list[wire.Org](ctx, c.t, path("orgs"), nil)
}

// AddAdmin makes a user an administrator of an organization.
func (c Orgs) AddAdmin(ctx context.Context, org, user string) error {
	return c.t.do(ctx, http.MethodPost, path("orgs", org, "admins"), nil, wire.OrgAdminRequest{User: user}, nil)
}

// RemoveAdmin removes a user from an organization's administrators.
func (c Orgs) RemoveAdmin(ctx context.Context, org, user string) error {
	return c.t.do(ctx, http.MethodDelete, path("orgs", org, "admins", user), nil, nil, nil)
}

// SplitRef splits a workspace or group reference: "org/name", or "name"
// for one of organization "default".
func SplitRef(ref string) (org, name string) {
	if o, n, ok := strings.Cut(ref, "/"); ok {
		return o, n
	}
	return "default", ref
}

// Create creates a workspace.
func (c Workspaces) Create(ctx context.Context, req wire.WorkspaceRequest) (*wire.Workspace, error) {
	return call[wire.Workspace](ctx, c.t, http.MethodPost, path("workspaces"), nil, req)
}

// List returns the workspaces of org ("" for every organization).
func (c Workspaces) List(ctx context.Context, org string) ([]wire.Workspace, error) {
	return list[wire.Workspace](ctx, c.t, path("workspaces"), filter("org", org))
}

// Get returns a workspace ("org/ws" or "ws") with its members,
// quota and usage.
func (c Workspaces) Get(ctx context.Context, ref string) (*wire.Workspace, error) {
	org, name := SplitRef(ref)
	return call[wire.Workspace](ctx, c.t, http.MethodGet, path("workspaces", org, name), nil, nil)
}

// Delete deletes a workspace that holds no object.
func (c Workspaces) Delete(ctx context.Context, ref string) error {
	org, name := SplitRef(ref)
	return c.t.do(ctx, http.MethodDelete, path("workspaces", org, name), nil, nil, nil)
}

// AddMember adds a user to a workspace with a role, or changes their role.
func (c Workspaces) AddMember(ctx context.Context, ref string, req wire.MemberRequest) error {
	org, name := SplitRef(ref)
	return c.t.do(ctx, http.MethodPost, path("workspaces", org, name, "members"), nil, req, nil)
}

// RemoveMember removes a user from a workspace.
func (c Workspaces) RemoveMember(ctx context.Context, ref, user string) error {
	org, name := SplitRef(ref)
	return c.t.do(ctx, http.MethodDelete, path("workspaces", org, name, "members", user), nil, nil, nil)
}

// SetQuota sets (all limits zero: removes) the quota of a user or a
// workspace.
func (c Workspaces) SetQuota(ctx context.Context, req wire.QuotaRequest) (*wire.QuotaLimits, error) {
	return call[wire.QuotaLimits](ctx, c.t, http.MethodPut, path("quotas"), nil, req)
}

// Create makes an API token and returns it: the only time its
// plaintext is given.
func (c Tokens) Create(ctx context.Context, req wire.TokenRequest) (*wire.NewToken, error) {
	return call[wire.NewToken](ctx, c.t, http.MethodPost, path("tokens"), nil, req)
}

// List returns the API tokens of user ("" for the caller's own),
// revoked and expired ones included.
func (c Tokens) List(ctx context.Context, user string) ([]wire.Token, error) {
	return list[wire.Token](ctx, c.t, path("tokens"), filter("user", user))
}

// Revoke revokes a token by its id.
func (c Tokens) Revoke(ctx context.Context, id string) error {
	return c.t.do(ctx, http.MethodDelete, path("tokens", id), nil, nil, nil)
}

// Create creates a group.
func (c Groups) Create(ctx context.Context, req wire.GroupRequest) (*wire.Group, error) {
	return call[wire.Group](ctx, c.t, http.MethodPost, path("groups"), nil, req)
}

// List returns the groups of org ("" for every organization) with
// their members.
func (c Groups) List(ctx context.Context, org string) ([]wire.Group, error) {
	return list[wire.Group](ctx, c.t, path("groups"), filter("org", org))
}

// Delete deletes a group ("org/group" or "group") and its shares.
func (c Groups) Delete(ctx context.Context, ref string) error {
	org, name := SplitRef(ref)
	return c.t.do(ctx, http.MethodDelete, path("groups", org, name), nil, nil, nil)
}

// AddMember adds a user to a group.
func (c Groups) AddMember(ctx context.Context, ref, user string) error {
	org, name := SplitRef(ref)
	return c.t.do(ctx, http.MethodPost, path("groups", org, name, "members"), nil, wire.GroupMemberRequest{User: user}, nil)
}

// RemoveMember removes a user from a group.
func (c Groups) RemoveMember(ctx context.Context, ref, user string) error {
	org, name := SplitRef(ref)
	return c.t.do(ctx, http.MethodDelete, path("groups", org, name, "members", user), nil, nil, nil)
}
