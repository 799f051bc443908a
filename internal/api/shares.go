package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// sharesHandler serves the shares of configurations with users and groups;
// they are decided on the configuration, by the route table's check.
type sharesHandler struct{ directory }

// grantee resolves a share's "with": a user name, or "group:G" (a group of
// the configuration's organization) or "group:org/G".
func grantee(tx store.Tx, with string, cfgOrg int64) (userID, groupID int64, err error) {
	name, isGroup := strings.CutPrefix(with, "group:")
	if !isGroup {
		u, err := userNamed(tx, with)
		if err != nil {
			return 0, 0, err
		}
		return u.ID, 0, nil
	}
	orgID := cfgOrg
	if o, g, ok := strings.Cut(name, "/"); ok {
		org, err := orgNamed(tx, o)
		if err != nil {
			return 0, 0, err
		}
		orgID, name = org.ID, g
	}
	if orgID == 0 {
		d, err := orgNamed(tx, store.DefaultOrg)
		if err != nil {
			return 0, 0, err
		}
		orgID = d.ID
	}
	g, err := tx.Groups().Get(orgID, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return 0, 0, errdefs.NotFound("group %q not found", with)
	}
	if err != nil {
		return 0, 0, err
	}
	return 0, g.ID, nil
}

// configAndGrantee returns the configuration {name} and the user or group
// of a share's "with" (see grantee; a bare group name is one of the
// configuration's organization, or of the default one when the
// configuration belongs to no workspace).
func configAndGrantee(tx store.Tx, name, with string) (cfg *store.Config, userID, groupID int64, err error) {
	cfg, err = tx.Configs().Get(name)
	if err != nil {
		return nil, 0, 0, err
	}
	var org int64
	if cfg.WorkspaceID != 0 {
		ws, err := tx.Workspaces().GetByID(cfg.WorkspaceID)
		if err != nil {
			return nil, 0, 0, err
		}
		org = ws.OrgID
	}
	userID, groupID, err = grantee(tx, with, org)
	return cfg, userID, groupID, err
}

func (h sharesHandler) share(w http.ResponseWriter, r *http.Request) error {
	var req wire.ShareRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	level, err := auth.ParseShareLevel(req.Level)
	if err != nil {
		return err
	}
	if req.With == "" {
		return errdefs.Invalid("share: with is required (a user, or group:G)")
	}
	name := r.PathValue("name")
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.Share, error) {
		cfg, uid, gid, err := configAndGrantee(tx, name, req.With)
		if err != nil {
			return wire.Share{}, err
		}
		s := store.Share{ObjectKind: store.ObjectConfig, ObjectID: cfg.ID, UserID: uid, GroupID: gid, Level: string(level)}
		if err := tx.Shares().Put(&s); err != nil {
			return wire.Share{}, err
		}
		if err := record(tx, callerOf(r.Context()), "config", "share", name, fmt.Sprintf("with %s, level %s", req.With, level)); err != nil {
			return wire.Share{}, err
		}
		return shareToWire(namesIn(tx), &s)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func shareToWire(n *names, s *store.Share) (wire.Share, error) {
	out := wire.Share{Level: s.Level, CreatedAt: s.CreatedAt}
	if s.UserID != 0 {
		u, err := n.user(s.UserID)
		out.With = u
		return out, err
	}
	g, err := n.tx.Groups().GetByID(s.GroupID)
	if err != nil {
		return out, err
	}
	o, err := n.org(g.OrgID)
	out.With = "group:" + o + "/" + g.Name
	return out, err
}

func (h sharesHandler) listShares(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	return viewJSON(w, r, h.store, func(tx store.Tx) ([]wire.Share, error) {
		cfg, err := tx.Configs().Get(name)
		if err != nil {
			return nil, err
		}
		ss, err := tx.Shares().Of(store.ObjectConfig, cfg.ID)
		if err != nil {
			return nil, err
		}
		n := namesIn(tx)
		return toWire(ss, func(s *store.Share) (wire.Share, error) { return shareToWire(n, s) })
	})
}

func (h sharesHandler) unshare(w http.ResponseWriter, r *http.Request) error {
	name, with := r.PathValue("name"), r.PathValue("grantee")
	return h.noContent(w, r, func(tx store.Tx) error {
		cfg, uid, gid, err := configAndGrantee(tx, name, with)
		if err != nil {
			return err
		}
		err = tx.Shares().Remove(store.ObjectConfig, cfg.ID, uid, gid)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.NotFound("configuration %q is not shared with %s", name, with)
		}
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "config", "unshare", name, "with "+with)
	})
}
