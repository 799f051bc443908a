package hostlink

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of a forwarded request's connection to the home host. A home
// that is cut off but not yet silent for the offline threshold must be
// answered for in seconds (503 naming it unreachable, or the store's
// answer for what the store alone answers), never after the minutes TCP
// would wait. None bounds the answer itself: a forwarded deploy answers
// once its VMs run, and a console lasts as long as its user.
const (
	// ForwardDialTimeout bounds the TCP connection, and then the TLS
	// handshake, each.
	ForwardDialTimeout = 3 * time.Second
	// ForwardUserTimeout is the connection's TCP_USER_TIMEOUT: data sent
	// (a request, a keepalive probe) that the peer has not acknowledged
	// after this long ends the connection. A live peer's kernel
	// acknowledges at once however long its answer takes; what this
	// catches is a pooled connection to a peer that has since become
	// unreachable, where a request would otherwise wait for TCP to give
	// up (about 15 minutes).
	ForwardUserTimeout = 5 * time.Second
)

// forwardDialer dials a forwarded request's connection.
func forwardDialer() *net.Dialer {
	return &net.Dialer{
		Timeout:   ForwardDialTimeout,
		KeepAlive: 15 * time.Second,
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(ForwardUserTimeout/time.Millisecond))
			})
			return errors.Join(err, serr)
		},
	}
}

// Unreachable reports whether err, from a forwarded request, means the
// peer could not be reached or stopped acknowledging: no connection, no
// TLS handshake in time, or a connection that timed out. Not a refused
// certificate pin, nor an answer the peer gave.
func Unreachable(err error) bool {
	var pin *PinError
	if err == nil || errors.As(err, &pin) || errors.Is(err, context.Canceled) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout() // the TLS handshake's timeout
}
