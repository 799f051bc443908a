package auth

import "context"

// How a request was authenticated (Identity.Via).
const (
	ViaUnixPeer = "unix-peer" // SO_PEERCRED on the unix socket
	ViaToken    = "token"     // Authorization: Bearer sht_…
	ViaSession  = "session"   // cookie shs_… after a password login
	ViaOIDC     = "oidc"      // session made by an OpenID Connect login
)

// Identity is who a request is, as its authentication established: the
// actor recorded in events and the input of Decide.
type Identity struct {
	UserID      int64
	Name        string
	SystemAdmin bool
	Via         string       // one of the Via* constants
	TokenID     string       // the token's or session's id, "" for a unix peer
	Restrict    *Restriction // nil unless a restricted token
}

// Actor is the identity as Decide's actor; orgAdminOf comes from the
// store, since it changes without the identity being made again.
func (id Identity) Actor(orgAdminOf []int64) Actor {
	return Actor{UserID: id.UserID, Name: id.Name, SystemAdmin: id.SystemAdmin, OrgAdminOf: orgAdminOf, Restrict: id.Restrict}
}

type identityKey struct{}

// WithIdentity returns ctx carrying id. Only the api's authentication step
// should call it, and only handlers read it back (FromContext): below the
// api the identity travels as an explicit argument, so the lab and the
// store never depend on what a context happens to hold.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	if id.Restrict != nil {
		r := *id.Restrict // a copy, so no caller can widen it later
		id.Restrict = &r
	}
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity ctx carries, and whether it carries one.
// A request without one is unauthenticated.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	if ok && id.Restrict != nil {
		r := *id.Restrict
		id.Restrict = &r
	}
	return id, ok
}
