// Package peer carries who is at the other end of a unix-socket connection
// (its SO_PEERCRED credentials) from the daemon's listener to each request's context.
package peer

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Cred is the kernel's word on the process that connected to a unix
// socket: its user, group and process ids when it called connect. It
// cannot be forged by the client, unlike anything sent in a request.
type Cred struct {
	UID uint32
	GID uint32
	PID int32
}

// credKey is the context key of a Cred.
type credKey struct{}

// WithCred returns ctx carrying c, the credentials of the connection a
// request came in on.
func WithCred(ctx context.Context, c Cred) context.Context {
	return context.WithValue(ctx, credKey{}, c)
}

// FromContext returns the credentials WithCred put in ctx; ok is false for
// a request that did not come over a unix socket (TCP carries none).
func FromContext(ctx context.Context) (c Cred, ok bool) {
	c, ok = ctx.Value(credKey{}).(Cred)
	return c, ok
}

// ReadCred asks the kernel for the credentials of conn's peer
// (SO_PEERCRED).
func ReadCred(conn *net.UnixConn) (Cred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("peer credentials: SO_PEERCRED: %w", serr)
	}
	return Cred{UID: uc.Uid, GID: uc.Gid, PID: uc.Pid}, nil
}
