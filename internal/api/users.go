package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// usersHandler serves the directory's users: the system administrator's;
// a user reads their own record and sets their own password.
type usersHandler struct{ directory }

func (h usersHandler) createUser(w http.ResponseWriter, r *http.Request) error {
	var req wire.UserRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
		return err
	}
	if err := lab.CheckName("user", req.Name); err != nil {
		return err
	}
	if reservedUserNames[req.Name] {
		return errdefs.Invalid("user name %q is reserved: the event log names the daemon's own actions by it", req.Name)
	}
	if err := checkEmail(req.Email); err != nil {
		return err
	}
	if err := checkDirText("display name", req.DisplayName); err != nil {
		return err
	}
	u := store.User{Name: req.Name, Email: req.Email, DisplayName: req.DisplayName, Disabled: req.Disabled, SystemAdmin: req.SystemAdmin}
	if req.Password != "" {
		// Hashed before the transaction: argon2id takes tens of ms and
		// the store serialises writers.
		hash, err := auth.HashPassword(req.Password)
		if err != nil {
			return fmt.Errorf("user %q: %w", req.Name, err)
		}
		u.PasswordHash = hash
	}
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.User, error) {
		if req.DefaultWorkspace != "" {
			ws, err := access.ResolveWorkspace(tx, 0, req.DefaultWorkspace)
			if err != nil {
				return wire.User{}, err
			}
			u.DefaultWorkspaceID = ws.ID
		}
		if err := tx.Users().Create(&u); err != nil {
			return wire.User{}, err
		}
		if err := record(tx, callerOf(r.Context()), "user", "create", u.Name, fmt.Sprintf("system admin: %t", u.SystemAdmin)); err != nil {
			return wire.User{}, err
		}
		return userToWire(namesIn(tx), &u)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("users", u.Name))
	return writeJSON(w, http.StatusCreated, out)
}

func userToWire(n *names, u *store.User) (wire.User, error) {
	ws, err := n.workspace(u.DefaultWorkspaceID)
	if errors.Is(err, errdefs.ErrNotFound) {
		ws, err = "", nil
	}
	return wire.User{
		Name: u.Name, Email: u.Email, DisplayName: u.DisplayName, Disabled: u.Disabled,
		SystemAdmin: u.SystemAdmin, HasPassword: u.PasswordHash != "", DefaultWorkspace: ws,
		CreatedAt: u.CreatedAt,
	}, err
}

func (h usersHandler) listUsers(w http.ResponseWriter, r *http.Request) error {
	if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
		return err
	}
	return viewJSON(w, r, h.store, func(tx store.Tx) ([]wire.User, error) {
		us, err := tx.Users().List()
		if err != nil {
			return nil, err
		}
		n := namesIn(tx)
		return toWire(us, func(u *store.User) (wire.User, error) { return userToWire(n, u) })
	})
}

func (h usersHandler) getUser(w http.ResponseWriter, r *http.Request) error {
	return viewJSON(w, r, h.store, func(tx store.Tx) (out wire.User, err error) {
		u, err := h.userFor(r.Context(), tx, r.PathValue("name"))
		if err != nil {
			return out, err
		}
		n := namesIn(tx)
		if out, err = userToWire(n, u); err != nil {
			return out, err
		}
		ms, err := tx.Memberships().OfUser(u.ID)
		if err != nil {
			return out, err
		}
		for _, m := range ms {
			ws, err := n.workspace(m.WorkspaceID)
			if err != nil {
				return out, err
			}
			out.Memberships = append(out.Memberships, wire.Membership{Workspace: ws, User: u.Name, Role: m.Role})
		}
		gs, err := tx.Groups().OfUser(u.ID)
		if err != nil {
			return out, err
		}
		for _, g := range gs {
			o, err := n.org(g.OrgID)
			if err != nil {
				return out, err
			}
			out.Groups = append(out.Groups, o+"/"+g.Name)
		}
		orgs, err := tx.Orgs().AdministeredBy(u.ID)
		if err != nil {
			return out, err
		}
		for _, o := range orgs {
			out.AdminOf = append(out.AdminOf, o.Name)
		}
		out.Quota, out.Usage, err = quotaOf(tx, store.QuotaScopeUser, u.ID)
		return out, err
	})
}

func (h usersHandler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
		return err
	}
	c := callerOf(r.Context())
	return h.noContent(w, r, func(tx store.Tx) error {
		u, err := userNamed(tx, r.PathValue("name"))
		if err != nil {
			return err
		}
		if c.is(u.ID) {
			// Nobody would be left to undo it if this were the last
			// administrator; another administrator can do it.
			return errdefs.Conflict("user %q: you cannot delete yourself", u.Name)
		}
		if err := tx.Users().Delete(u.ID); err != nil {
			return err
		}
		return record(tx, c, "user", "delete", u.Name, "")
	})
}

// updateUser changes the fields of a user the request gives (PATCH: the
// others stay). The system administrator changes anyone's; a user their
// own e-mail, display name and default workspace (one they are a member
// of). Disabling and making or unmaking a system administrator are the
// system administrator's, who cannot do either to themselves (someone
// must be left to undo it). A restricted token changes nothing: the change
// would outlive its restriction. A disabled user's tokens and sessions
// are refused from the next request on: authentication reads the user
// every time.
func (h usersHandler) updateUser(w http.ResponseWriter, r *http.Request) error {
	var req wire.UserUpdate
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ctx, name := r.Context(), r.PathValue("name")
	c := callerOf(ctx)
	if !c.system && c.id.Restrict != nil {
		return errdefs.Forbidden("a token restricted to one workspace cannot change users")
	}
	if req.Email != nil {
		if err := checkEmail(*req.Email); err != nil {
			return err
		}
	}
	if req.DisplayName != nil {
		if err := checkDirText("display name", *req.DisplayName); err != nil {
			return err
		}
	}
	if req.Email == nil && req.DisplayName == nil && req.DefaultWorkspace == nil && req.Disabled == nil && req.SystemAdmin == nil {
		return errdefs.Invalid("user %q: nothing to change: give email, display_name, default_workspace, disabled or system_admin", name)
	}
	var out wire.User
	err := h.updateDirectory(ctx, h.store, func(tx store.Tx) error {
		u, err := h.userFor(ctx, tx, name)
		if err != nil {
			return err
		}
		if req.Disabled != nil || req.SystemAdmin != nil {
			if err := h.needSystemAdmin(ctx, auth.UserAdmin); err != nil {
				return fmt.Errorf("user %q: disabling and system administration are the system administrator's: %w", name, err)
			}
			if c.is(u.ID) && (req.Disabled != nil && *req.Disabled || req.SystemAdmin != nil && !*req.SystemAdmin) {
				return errdefs.Conflict("user %q: you cannot disable yourself or give up your own system administration; another administrator can", name)
			}
		}
		var changed []string
		if req.Email != nil {
			u.Email = *req.Email
			changed = append(changed, "email")
		}
		if req.DisplayName != nil {
			u.DisplayName = *req.DisplayName
			changed = append(changed, "display name")
		}
		if req.DefaultWorkspace != nil {
			u.DefaultWorkspaceID = 0
			if ref := *req.DefaultWorkspace; ref != "" {
				ws, err := access.ResolveWorkspace(tx, 0, ref)
				if err != nil {
					return err
				}
				if !c.admin() {
					// Checked on the checker's own read: a member of
					// the workspace (or an admin of its organization).
					if err := h.checkWorkspace(ctx, auth.StatusRead, ref); err != nil {
						return err
					}
				}
				u.DefaultWorkspaceID = ws.ID
			}
			changed = append(changed, "default workspace "+orNone(*req.DefaultWorkspace))
		}
		if req.Disabled != nil {
			u.Disabled = *req.Disabled
			changed = append(changed, fmt.Sprintf("disabled: %t", u.Disabled))
		}
		if req.SystemAdmin != nil {
			u.SystemAdmin = *req.SystemAdmin
			changed = append(changed, fmt.Sprintf("system admin: %t", u.SystemAdmin))
		}
		if err := tx.Users().Update(u); err != nil {
			return err
		}
		if err := record(tx, c, "user", "update", u.Name, strings.Join(changed, ", ")); err != nil {
			return err
		}
		out, err = userToWire(namesIn(tx), u)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// checkEmail accepts an e-mail address, or none ("").
func checkEmail(s string) error {
	if err := checkDirText("email", s); err != nil {
		return err
	}
	if s != "" && !strings.Contains(s, "@") {
		return errdefs.Invalid("email %q is not an address", s)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// setPassword sets a user's password: one's own with the current one, or
// anyone's as the system administrator. A restricted token changes no
// password: it would outlive its restriction.
func (h usersHandler) setPassword(w http.ResponseWriter, r *http.Request) error {
	var req wire.PasswordRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c := callerOf(r.Context())
	name := r.PathValue("name")
	if !c.system && c.id.Restrict != nil {
		return errdefs.Forbidden("a token restricted to one workspace cannot change passwords")
	}
	if err := auth.ValidatePassword(req.Password); err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	var current string
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		u, err := h.userFor(r.Context(), tx, name)
		if err != nil {
			return err
		}
		current = u.PasswordHash
		if c.admin() {
			return nil
		}
		if req.OldPassword == "" {
			return errdefs.Invalid("changing your own password needs the current one (old_password; stagehand user set-password %s --current)", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !c.admin() {
		if current == "" || auth.CheckPassword(current, req.OldPassword) != nil {
			return errdefs.Forbidden("user %q: the current password is wrong", name)
		}
	}
	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	return h.noContent(w, r, func(tx store.Tx) error {
		u, err := userNamed(tx, name)
		if err != nil {
			return err
		}
		if u.PasswordHash != current {
			return errdefs.Conflict("user %q: the password changed meanwhile; try again", name)
		}
		u.PasswordHash = hash
		if err := tx.Users().Update(u); err != nil {
			return err
		}
		return record(tx, c, "user", "set-password", u.Name, "")
	})
}

// --- tokens ---------------------------------------------------------------

// tokensHandler serves API tokens: anyone's own (status.read is every
// user's), another user's for the system administrator only.
type tokensHandler struct{ directory }

// Token lifetimes: the default, and the longest a token may be given; a
// token always expires.
const (
	DefaultTokenLifetime = 90 * 24 * time.Hour
	MaxTokenLifetime     = 366 * 24 * time.Hour
)

// ParseLifetime reads a token lifetime: a Go duration ("12h", "720h") or
// whole days ("30d"), more than 0 and at most MaxTokenLifetime; "" is
// DefaultTokenLifetime.
func ParseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return DefaultTokenLifetime, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, errdefs.Invalid("token lifetime %q: want a duration such as 30d or 12h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errdefs.Invalid("token lifetime %q: want a duration such as 30d or 12h", s)
		}
	}
	if d <= 0 || d > MaxTokenLifetime {
		return 0, errdefs.Invalid("token lifetime %q: want more than 0 and at most 366d (a token always expires)", s)
	}
	return d, nil
}

// tokenOwner returns whose tokens a request reads or (change) makes or
// revokes: name ("" for the caller's own), another user's for the system
// administrator only. A restricted token lists its user's tokens but
// changes none: a new one could shed its restriction. The unix peer root
// has no user and must name one.
func (h tokensHandler) tokenOwner(ctx context.Context, tx store.Tx, name string, change bool) (*store.User, error) {
	c := callerOf(ctx)
	if change && !c.system && c.id.Restrict != nil {
		return nil, errdefs.Forbidden("a token restricted to one workspace cannot manage tokens")
	}
	if name == "" {
		if c.system || c.id.UserID == 0 {
			return nil, errdefs.Invalid("you are not a user of the directory (the unix socket's root): name the user whose tokens these are")
		}
		u, err := tx.Users().GetByID(c.id.UserID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, errdefs.Unauthenticated("user %q no longer exists", c.id.Name)
		}
		return u, err
	}
	return h.userFor(ctx, tx, name)
}

func (h tokensHandler) createToken(w http.ResponseWriter, r *http.Request) error {
	var req wire.TokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkDirText("token name", req.Name); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return errdefs.Invalid("a token needs a name (what it is for)")
	}
	life, err := ParseLifetime(req.ExpiresIn)
	if err != nil {
		return err
	}
	if (req.Workspace == "") != (req.MaxRole == "") {
		return errdefs.Invalid("token %q: workspace and max_role go together", req.Name)
	}
	var role auth.Role
	if req.MaxRole != "" {
		if role, err = auth.ParseRole(req.MaxRole); err != nil {
			return err
		}
	}
	plaintext, id, hash := auth.NewToken()
	now := time.Now()
	tk := store.Token{ID: id, Hash: hash, Kind: store.TokenAPI, Name: req.Name, CreatedAt: now,
		ExpiresAt: now.Add(life), RestrictRole: string(role)}
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.NewToken, error) {
		u, err := h.tokenOwner(r.Context(), tx, req.User, true)
		if err != nil {
			return wire.NewToken{}, err
		}
		tk.UserID = u.ID
		if req.Workspace != "" {
			ws, err := access.ResolveWorkspace(tx, u.ID, req.Workspace)
			if err != nil {
				return wire.NewToken{}, err
			}
			tk.RestrictWorkspaceID = ws.ID
		}
		if err := tx.Tokens().Create(&tk); err != nil {
			return wire.NewToken{}, err
		}
		if err := record(tx, callerOf(r.Context()), "token", "create", tk.ID,
			fmt.Sprintf("%q of user %s, expires %s", tk.Name, u.Name, tk.ExpiresAt.UTC().Format(time.RFC3339))); err != nil {
			return wire.NewToken{}, err
		}
		rec, err := tokenToWire(namesIn(tx), &tk, now)
		return wire.NewToken{Token: plaintext, Record: rec}, err
	})
	if err != nil {
		return err
	}
	h.log.Info("token created", "token", tk.ID, "name", tk.Name, "user", out.Record.User)
	return writeJSON(w, http.StatusCreated, out)
}

func tokenToWire(n *names, tk *store.Token, now time.Time) (wire.Token, error) {
	u, err := n.user(tk.UserID)
	if err != nil {
		return wire.Token{}, err
	}
	ws, err := n.workspace(tk.RestrictWorkspaceID)
	if err != nil {
		return wire.Token{}, err
	}
	state := wire.TokenActive
	switch {
	case !tk.RevokedAt.IsZero():
		state = wire.TokenRevoked
	case !tk.ExpiresAt.IsZero() && !tk.ExpiresAt.After(now):
		state = wire.TokenExpired
	}
	return wire.Token{ID: tk.ID, Name: tk.Name, User: u, State: state, Workspace: ws, MaxRole: tk.RestrictRole,
		CreatedAt: tk.CreatedAt, ExpiresAt: tk.ExpiresAt, LastUsedAt: tk.LastUsedAt, RevokedAt: tk.RevokedAt}, nil
}

// listTokens lists API tokens, never their secrets: the caller's own, a
// named user's (the system administrator), or everyone's for the unix
// peer root, who has none of their own.
func (h tokensHandler) listTokens(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	user := r.URL.Query().Get("user")
	return viewJSON(w, r, h.store, func(tx store.Tx) ([]wire.Token, error) {
		var users []store.User
		if user == "" && c.admin() && c.id.UserID == 0 {
			var err error
			if users, err = tx.Users().List(); err != nil {
				return nil, err
			}
		} else {
			u, err := h.tokenOwner(r.Context(), tx, user, false)
			if err != nil {
				return nil, err
			}
			users = []store.User{*u}
		}
		n, now := namesIn(tx), time.Now()
		out := []wire.Token{}
		for _, u := range users {
			tks, err := tx.Tokens().List(u.ID)
			if err != nil {
				return nil, err
			}
			for i := range tks {
				if tks[i].Kind != store.TokenAPI {
					continue
				}
				wt, err := tokenToWire(n, &tks[i], now)
				if err != nil {
					return nil, err
				}
				out = append(out, wt)
			}
		}
		return out, nil
	})
}

// revokeToken revokes a token of the caller's, or anyone's for the system
// administrator; someone else's is not found.
func (h tokensHandler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	id := r.PathValue("id")
	err := h.noContent(w, r, func(tx store.Tx) error {
		if !c.system && c.id.Restrict != nil {
			return errdefs.Forbidden("a token restricted to one workspace cannot manage tokens")
		}
		tk, err := tx.Tokens().Get(id)
		if errors.Is(err, errdefs.ErrNotFound) || err == nil && !c.admin() && !c.is(tk.UserID) {
			return errdefs.NotFound("token %q not found", id)
		}
		if err != nil {
			return err
		}
		if err := tx.Tokens().Revoke(id, time.Now()); err != nil {
			return err
		}
		return record(tx, c, "token", "revoke", id, "")
	})
	if err == nil {
		h.log.Info("token revoked", "token", id)
	}
	return err
}
