// Package errdefs defines the few kinds of error the whole program speaks:
// not found, conflict, invalid input, unavailable, canceled, and the two of
// identity: unauthenticated (who are you?) and forbidden (you may not).
// Lower packages wrap them with context; internal/api maps each kind to one
// HTTP status, and the client turns the status back into the same kind so
// callers can test it with errors.Is.
package errdefs

import (
	"errors"
	"fmt"
)

// The kinds. Wrap them with %w; never compare messages.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrInvalid     = errors.New("invalid")
	ErrUnavailable = errors.New("unavailable")
	ErrCanceled    = errors.New("canceled")
	// ErrUnauthenticated: the request carries no valid identity (a 401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the identity is known and may see the object, but not
	// do this to it (a 403). An object it may not see is ErrNotFound.
	ErrForbidden = errors.New("forbidden")
)

// kindError carries a user-facing message and a kind, so that the message
// does not end in ": not found" while errors.Is still sees the kind.
type kindError struct {
	kind error
	msg  string // the whole message, cause included
	err  error  // optional cause, from %w
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Is(target error) bool { return target == e.kind }
func (e *kindError) Unwrap() error        { return e.err }

func newf(kind error, format string, args ...any) error {
	// Let %w in the format keep a cause while the kind stays explicit.
	wrapped := fmt.Errorf(format, args...)
	return &kindError{kind: kind, msg: wrapped.Error(), err: errors.Unwrap(wrapped)}
}

// NotFound returns an error of kind ErrNotFound with the formatted message.
func NotFound(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// Conflict returns an error of kind ErrConflict with the formatted message.
func Conflict(format string, args ...any) error { return newf(ErrConflict, format, args...) }

// Invalid returns an error of kind ErrInvalid with the formatted message.
func Invalid(format string, args ...any) error { return newf(ErrInvalid, format, args...) }

// Unavailable returns an error of kind ErrUnavailable with the formatted message.
func Unavailable(format string, args ...any) error { return newf(ErrUnavailable, format, args...) }

// Unauthenticated returns an error of kind ErrUnauthenticated with the formatted message.
func Unauthenticated(format string, args ...any) error {
	return newf(ErrUnauthenticated, format, args...)
}

// Forbidden returns an error of kind ErrForbidden with the formatted message.
func Forbidden(format string, args ...any) error { return newf(ErrForbidden, format, args...) }

// Kind returns the kind of err (one of the Err* values), or nil when err is
// of no known kind (an internal error).
func Kind(err error) error {
	for _, k := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrUnavailable, ErrCanceled, ErrUnauthenticated, ErrForbidden} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
