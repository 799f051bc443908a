package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"stagehand/internal/api/wire"
)

// The directory's endpoints: users, organizations, workspaces, groups,
// tokens, shares, quotas and auth explain.

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, req wire.UserRequest) (*wire.User, error) {
	return call[wire.User](ctx, c, http.MethodPost, path("users"), nil, req)
}

// ListUsers returns the users.
func (c *Client) ListUsers(ctx context.Context) ([]wire.User, error) {
	return list[wire.User](ctx, c, path("users"), nil)
}

// GetUser returns one user with their memberships, groups, quota and usage.
func (c *Client) GetUser(ctx context.Context, name string) (*wire.User, error) {
	return call[wire.User](ctx, c, http.MethodGet, path("users", name), nil, nil)
}

// UpdateUser changes the fields of a user that req gives (the others stay)
// and returns the user.
func (c *Client) UpdateUser(ctx context.Context, name string, req wire.UserUpdate) (*wire.User, error) {
	return call[wire.User](ctx, c, http.MethodPatch, path("users", name), nil, req)
}

// DeleteUser deletes a user who owns nothing.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("users", name), nil, nil, nil)
}

// SetPassword sets a user's password.
func (c *Client) SetPassword(ctx context.Context, name string, req wire.PasswordRequest) error {
	return c.do(ctx, http.MethodPut, path("users", name, "password"), nil, req, nil)
}

// CreateOrg creates an organization with its workspace "main".
func (c *Client) CreateOrg(ctx context.Context, req wire.OrgRequest) (*wire.Org, error) {
	return call[wire.Org](ctx, c, http.MethodPost, path("orgs"), nil, req)
}

// ListOrgs returns the organizations.
func (c *Client) ListOrgs(ctx context.Context) ([]wire.Org, error) {
	return list[wire.Org](ctx, c, path("orgs"), nil)
}

// AddOrgAdmin makes a user an administrator of an organization.
func (c *Client) AddOrgAdmin(ctx context.Context, org, user string) error {
	return c.do(ctx, http.MethodPost, path("orgs", org, "admins"), nil, wire.OrgAdminRequest{User: user}, nil)
}

// RemoveOrgAdmin removes a user from an organization's administrators.
func (c *Client) RemoveOrgAdmin(ctx context.Context, org, user string) error {
	return c.do(ctx, http.MethodDelete, path("orgs", org, "admins", user), nil, nil, nil)
}

// SplitRef splits a workspace or group reference: "org/name", or "name"
// for one of organization "default".
func SplitRef(ref string) (org, name string) {
	if o, n, ok := strings.Cut(ref, "/"); ok {
		return o, n
	}
	return "default", ref
}

// CreateWorkspace creates a workspace.
func (c *Client) CreateWorkspace(ctx context.Context, req wire.WorkspaceRequest) (*wire.Workspace, error) {
	return call[wire.Workspace](ctx, c, http.MethodPost, path("workspaces"), nil, req)
}

// ListWorkspaces returns the workspaces of org ("" for every organization).
func (c *Client) ListWorkspaces(ctx context.Context, org string) ([]wire.Workspace, error) {
	var q url.Values
	if org != "" {
		q = url.Values{"org": {org}}
	}
	return list[wire.Workspace](ctx, c, path("workspaces"), q)
}

// GetWorkspace returns a workspace ("org/ws" or "ws") with its members,
// quota and usage.
func (c *Client) GetWorkspace(ctx context.Context, ref string) (*wire.Workspace, error) {
	org, name := SplitRef(ref)
	return call[wire.Workspace](ctx, c, http.MethodGet, path("workspaces", org, name), nil, nil)
}

// DeleteWorkspace deletes a workspace that holds no object.
func (c *Client) DeleteWorkspace(ctx context.Context, ref string) error {
	org, name := SplitRef(ref)
	return c.do(ctx, http.MethodDelete, path("workspaces", org, name), nil, nil, nil)
}

// AddMember adds a user to a workspace with a role, or changes their role.
func (c *Client) AddMember(ctx context.Context, ref string, req wire.MemberRequest) error {
	org, name := SplitRef(ref)
	return c.do(ctx, http.MethodPost, path("workspaces", org, name, "members"), nil, req, nil)
}

// RemoveMember removes a user from a workspace.
func (c *Client) RemoveMember(ctx context.Context, ref, user string) error {
	org, name := SplitRef(ref)
	return c.do(ctx, http.MethodDelete, path("workspaces", org, name, "members", user), nil, nil, nil)
}

// SetQuota sets (all limits zero: removes) the quota of a user or a
// workspace.
func (c *Client) SetQuota(ctx context.Context, req wire.QuotaRequest) (*wire.QuotaLimits, error) {
	return call[wire.QuotaLimits](ctx, c, http.MethodPut, path("quotas"), nil, req)
}

// CreateToken makes an API token and returns it: the only time its
// plaintext is given.
func (c *Client) CreateToken(ctx context.Context, req wire.TokenRequest) (*wire.NewToken, error) {
	return call[wire.NewToken](ctx, c, http.MethodPost, path("tokens"), nil, req)
}

// ListTokens returns the API tokens of user ("" for the caller's own),
// revoked and expired ones included.
func (c *Client) ListTokens(ctx context.Context, user string) ([]wire.Token, error) {
	var q url.Values
	if user != "" {
		q = url.Values{"user": {user}}
	}
	return list[wire.Token](ctx, c, path("tokens"), q)
}

// RevokeToken revokes a token by its id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, path("tokens", id), nil, nil, nil)
}

// ShareConfig shares a configuration with a user or "group:G", or changes
// that grantee's level.
func (c *Client) ShareConfig(ctx context.Context, config string, req wire.ShareRequest) (*wire.Share, error) {
	return call[wire.Share](ctx, c, http.MethodPost, path("configs", config, "shares"), nil, req)
}

// UnshareConfig removes a grantee's share of a configuration.
func (c *Client) UnshareConfig(ctx context.Context, config, with string) error {
	return c.do(ctx, http.MethodDelete, path("configs", config, "shares", with), nil, nil, nil)
}

// ListShares returns the shares of a configuration.
func (c *Client) ListShares(ctx context.Context, config string) ([]wire.Share, error) {
	return list[wire.Share](ctx, c, path("configs", config, "shares"), nil)
}

// CreateGroup creates a group.
func (c *Client) CreateGroup(ctx context.Context, req wire.GroupRequest) (*wire.Group, error) {
	return call[wire.Group](ctx, c, http.MethodPost, path("groups"), nil, req)
}

// ListGroups returns the groups of org ("" for every organization) with
// their members.
func (c *Client) ListGroups(ctx context.Context, org string) ([]wire.Group, error) {
	var q url.Values
	if org != "" {
		q = url.Values{"org": {org}}
	}
	return list[wire.Group](ctx, c, path("groups"), q)
}

// DeleteGroup deletes a group ("org/group" or "group") and its shares.
func (c *Client) DeleteGroup(ctx context.Context, ref string) error {
	org, name := SplitRef(ref)
	return c.do(ctx, http.MethodDelete, path("groups", org, name), nil, nil, nil)
}

// AddGroupMember adds a user to a group.
func (c *Client) AddGroupMember(ctx context.Context, ref, user string) error {
	org, name := SplitRef(ref)
	return c.do(ctx, http.MethodPost, path("groups", org, name, "members"), nil, wire.GroupMemberRequest{User: user}, nil)
}

// RemoveGroupMember removes a user from a group.
func (c *Client) RemoveGroupMember(ctx context.Context, ref, user string) error {
	org, name := SplitRef(ref)
	return c.do(ctx, http.MethodDelete, path("groups", org, name, "members", user), nil, nil, nil)
}

// Explain says whether a user may do an action to an object ("kind/name")
// and which row decided.
func (c *Client) Explain(ctx context.Context, req wire.ExplainRequest) (*wire.Explanation, error) {
	return call[wire.Explanation](ctx, c, http.MethodPost, path("auth", "explain"), nil, req)
}
