package auth

import (
	"fmt"
	"math/bits"
	"slices"

	"stagehand/internal/errdefs"
)

// WorkspaceKind says who sees whose objects in a workspace: in a shared
// one every member sees (and, as far as the role allows, acts on) every
// object; in a private one each member sees their own and what is shared
// with them. Any other value (an unset one included) counts as private,
// the side that shows less.
type WorkspaceKind string

const (
	WorkspaceShared  WorkspaceKind = "shared"
	WorkspacePrivate WorkspaceKind = "private"
)

// Restriction narrows a token: it acts only in one workspace and never
// beyond one role's row there, whatever its owner may do.
type Restriction struct {
	WorkspaceID int64
	MaxRole     Role
}

// Actor is who asks.
type Actor struct {
	UserID      int64
	Name        string // for the reason only
	SystemAdmin bool
	OrgAdminOf  []int64      // the organizations this user administers
	Restrict    *Restriction // nil for an unrestricted identity
}

// Share is one grant on one object: to a user (UserID) or to a group
// (GroupID), at a level.
type Share struct {
	UserID  int64
	GroupID int64
	Level   ShareLevel
}

// Object is what the action is on. ID 0 means no single object: the
// action is on the workspace itself (create in it, list it), and is
// decided on the membership alone. WorkspaceID 0 means no workspace: a
// system-wide action (status, doctor, users), or an organization's when
// OrgID is set.
type Object struct {
	Kind        string // "config", "template", …; names the object in messages
	Name        string
	ID          int64
	WorkspaceID int64
	OrgID       int64 // the organization of the workspace (or the org itself)
	OwnerID     int64
	Shares      []Share
}

// Input is everything Decide looks at; the store fills it, Decide reads
// nothing else.
type Input struct {
	Actor         Actor
	Action        Action
	Object        Object
	Memberships   map[int64]Role // workspace id → the actor's role there
	Groups        []int64        // the groups the actor belongs to
	WorkspaceKind WorkspaceKind  // of Object.WorkspaceID
}

// Decision is Decide's answer. Visible says whether the actor may know the
// object exists (may read it): a refused request on an invisible object
// answers 404, on a visible one 403. Reason names the row that decided
// (system administrator, org admin, membership and role, share), for logs
// and `stagehand auth explain`.
type Decision struct {
	Allowed bool
	Visible bool
	Reason  string
	subject string // `config "web"`, for Err
}

// Err is nil when the decision allows, an errdefs.NotFound naming only the
// object when the object is invisible, and an errdefs.Forbidden carrying
// the reason when it is visible.
func (d Decision) Err() error {
	switch {
	case d.Allowed:
		return nil
	case !d.Visible:
		return errdefs.NotFound("%s not found", d.subject)
	default:
		return errdefs.Forbidden("%s", d.Reason)
	}
}

// Decide says whether in.Actor may do in.Action to in.Object. The rules,
// first match deciding:
//
//  1. The system administrator may do everything.
//  2. An admin of the object's organization may do everything in it.
//  3. System-wide actions (no workspace): status.read for anyone, the rest
//     for the above only.
//  4. On a workspace itself (create, list): the member's role row.
//  5. On an object, for a member of its workspace: the role row, when the
//     workspace is shared, the actor owns the object or is the
//     workspace's admin; otherwise (private workspace, someone else's)
//     role ∩ share, and without a share the object is invisible.
//  6. For anyone else: share ∩ read — at most read, and only through a
//     share; without one the object is invisible.
//
// A restricted token never exceeds its restriction: outside its
// workspace it sees nothing, inside it the result is cut to MaxRole's row.
func Decide(in Input) Decision {
	obj := &in.Object
	d := decision{subject: subject(obj)}
	bit, known := actionBit[in.Action]
	if !known {
		return Decision{Visible: true, subject: d.subject,
			Reason: fmt.Sprintf("refused: unknown action %q", in.Action)}
	}
	d.decide(&in)

	if r := in.Actor.Restrict; r != nil {
		switch {
		case obj.WorkspaceID == 0:
			d.allowed &= roleSets[r.MaxRole] // system-wide: at most what the role may (status.read)
			d.why += fmt.Sprintf("; token restricted to role %s in workspace %d", r.MaxRole, r.WorkspaceID)
		case obj.WorkspaceID != r.WorkspaceID:
			d.allowed, d.visible = 0, false
			d.why = fmt.Sprintf("token restricted to workspace %d, the object is in workspace %d", r.WorkspaceID, obj.WorkspaceID)
		default:
			d.allowed &= roleSets[r.MaxRole]
			d.why += fmt.Sprintf("; token restricted to role %s", r.MaxRole)
		}
	}

	out := Decision{Allowed: d.allowed&bit != 0, subject: d.subject}
	if obj.ID == 0 && obj.WorkspaceID != 0 {
		// Creating or listing in a workspace one cannot see: the workspace
		// is what is not found.
		out.subject = fmt.Sprintf("workspace %d", obj.WorkspaceID)
	}
	// An object is visible when the actor may read it; a workspace or a
	// system-wide target when decide said so (membership, or nothing to hide).
	if read, ok := actionBit[Action(obj.Kind+".read")]; ok && obj.ID != 0 {
		out.Visible = out.Allowed || d.allowed&read != 0
	} else {
		out.Visible = out.Allowed || d.visible
	}
	verdict := "refused"
	if out.Allowed {
		verdict = "allowed"
	}
	out.Reason = fmt.Sprintf("%s: %s %s on %s: %s", verdict, actorName(&in.Actor), in.Action, d.subject, d.why)
	return out
}

// decision is Decide's working state: the set of actions the actor may do
// on the object, whether the target (workspace or system) is visible
// regardless, and why.
type decision struct {
	allowed actionSet
	visible bool
	why     string
	subject string
}

func (d *decision) decide(in *Input) {
	a, obj := &in.Actor, &in.Object
	if a.SystemAdmin {
		d.allowed, d.visible, d.why = allSet, true, "system administrator"
		return
	}
	if obj.OrgID != 0 && slices.Contains(a.OrgAdminOf, obj.OrgID) {
		d.allowed, d.visible, d.why = allSet, true, fmt.Sprintf("admin of organization %d", obj.OrgID)
		return
	}
	if obj.WorkspaceID == 0 {
		d.allowed, d.visible = everyone, true
		d.why = "outside any workspace only status.read is open to every user; the rest is the system administrator's"
		if obj.OrgID != 0 {
			d.why = fmt.Sprintf("not an admin of organization %d", obj.OrgID)
		}
		return
	}
	role, member := in.Memberships[obj.WorkspaceID]
	if obj.ID == 0 {
		if !member {
			d.why = fmt.Sprintf("not a member of workspace %d", obj.WorkspaceID)
			return
		}
		d.allowed, d.visible = roleSets[role], true
		d.why = fmt.Sprintf("role %s in workspace %d", role, obj.WorkspaceID)
		return
	}
	owner := a.UserID != 0 && obj.OwnerID == a.UserID
	if member {
		switch {
		case owner:
			d.allowed, d.why = roleSets[role], fmt.Sprintf("owner, role %s in workspace %d", role, obj.WorkspaceID)
			return
		case role == RoleAdmin:
			d.allowed, d.why = roleSets[role], fmt.Sprintf("role admin in workspace %d", obj.WorkspaceID)
			return
		case in.WorkspaceKind == WorkspaceShared:
			d.allowed, d.why = roleSets[role], fmt.Sprintf("role %s in shared workspace %d", role, obj.WorkspaceID)
			return
		}
	}
	usable := readSet // what an outsider can use of any share
	if member {
		usable = roleSets[role]
	}
	share, via := bestShare(in, usable)
	switch {
	case via == "" && member:
		d.why = fmt.Sprintf("private workspace %d: not the owner and no share", obj.WorkspaceID)
	case via == "":
		d.why = fmt.Sprintf("not a member of workspace %d and no share", obj.WorkspaceID)
	case member:
		d.allowed = roleSets[role] & share
		d.why = fmt.Sprintf("role %s in private workspace %d ∩ %s", role, obj.WorkspaceID, via)
	default:
		d.allowed = share & readSet
		d.why = fmt.Sprintf("%s, outside its workspace at most read", via)
	}
}

// bestShare returns the union of the shares that reach the actor
// (directly or through a group), and names for the reason the one that
// grants the action if one does, else the one that grants the most.
// usable is what the actor can use of any share (the role row, or read
// for an outsider); it only steers which share is named.
func bestShare(in *Input, usable actionSet) (actionSet, string) {
	var union actionSet
	best, bestN := -1, -1
	bit := actionBit[in.Action]
	for i := range in.Object.Shares {
		s := &in.Object.Shares[i]
		if !reaches(s, in) {
			continue
		}
		set := shareSets[s.Level]
		union |= set
		// Prefer a share that grants the action, then the larger set.
		n := bits.OnesCount64(uint64(set & usable))
		if set&usable&bit != 0 {
			n += 64
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	if best < 0 {
		return 0, ""
	}
	s := &in.Object.Shares[best]
	if s.UserID != 0 && s.UserID == in.Actor.UserID {
		return union, fmt.Sprintf("share %s with user", s.Level)
	}
	return union, fmt.Sprintf("share %s with group %d", s.Level, s.GroupID)
}

// reaches reports whether share s is the actor's, directly or through one
// of their groups. Id 0 is nobody.
func reaches(s *Share, in *Input) bool {
	return s.UserID != 0 && s.UserID == in.Actor.UserID ||
		s.GroupID != 0 && slices.Contains(in.Groups, s.GroupID)
}

func subject(obj *Object) string {
	switch {
	case obj.ID != 0 && obj.Name != "":
		return fmt.Sprintf("%s %q", obj.Kind, obj.Name)
	case obj.ID != 0:
		return fmt.Sprintf("%s %d", obj.Kind, obj.ID)
	case obj.WorkspaceID != 0 && (obj.Kind == "" || obj.Kind == "workspace"):
		return fmt.Sprintf("workspace %d", obj.WorkspaceID)
	case obj.WorkspaceID != 0:
		return fmt.Sprintf("%ss in workspace %d", obj.Kind, obj.WorkspaceID)
	case obj.OrgID != 0:
		return fmt.Sprintf("organization %d", obj.OrgID)
	default:
		return "the system"
	}
}

func actorName(a *Actor) string {
	if a.Name != "" {
		return fmt.Sprintf("user %q", a.Name)
	}
	return fmt.Sprintf("user %d", a.UserID)
}
