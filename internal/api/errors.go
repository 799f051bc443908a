package api

import (
	"context"
	"errors"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// StatusClientClosedRequest is the status of a request whose client went
// away before the answer (nginx's 499): nobody reads it, but the log
// says what happened instead of calling it an internal error.
const StatusClientClosedRequest = 499

// statusOf is the one place where an error kind becomes an HTTP status and a
// wire kind. An error of no known kind is internal, except a cancellation:
// the client that went away (499), or the daemon stopping the work (503).
func statusOf(r *http.Request, err error) (int, string) {
	switch errdefs.Kind(err) {
	case errdefs.ErrInvalid:
		return http.StatusBadRequest, wire.KindInvalid
	case errdefs.ErrNotFound:
		return http.StatusNotFound, wire.KindNotFound
	case errdefs.ErrConflict:
		return http.StatusConflict, wire.KindConflict
	case errdefs.ErrUnavailable:
		return http.StatusServiceUnavailable, wire.KindUnavailable
	case errdefs.ErrCanceled:
		return http.StatusConflict, wire.KindCanceled
	case errdefs.ErrUnauthenticated:
		return http.StatusUnauthorized, wire.KindUnauthenticated
	case errdefs.ErrForbidden:
		return http.StatusForbidden, wire.KindForbidden
	}
	cancelled := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	switch {
	case cancelled && r.Context().Err() != nil:
		return StatusClientClosedRequest, wire.KindCanceled
	case cancelled:
		return http.StatusServiceUnavailable, wire.KindUnavailable
	}
	return http.StatusInternalServerError, wire.KindInternal
}

// wwwAuthenticate is the challenge of a 401: a bearer token (sht_…) or a
// session.
const wwwAuthenticate = `Bearer realm="stagehand"`

// writeError answers with err's status and the error body. Internal errors
// are logged here, since they are bugs or environment failures the user
// cannot fix by changing the request; a client that went away is only
// worth a debug line.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, kind := statusOf(r, err)
	switch status {
	case http.StatusUnauthorized:
		// RFC 9110 §11.6.1: a 401 names the scheme that would do.
		w.Header().Set("WWW-Authenticate", wwwAuthenticate)
	case http.StatusInternalServerError:
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case StatusClientClosedRequest:
		h.log.Debug("request abandoned by its client", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if werr := writeJSON(w, status, wire.Error{Error: err.Error(), Kind: kind}); werr != nil {
		h.log.Debug("write error response", "err", werr)
	}
}

// errMalformed marks a request whose body or parameters do not have the
// expected shape; it is of kind invalid.
func errMalformed(format string, args ...any) error {
	return errdefs.Invalid(format, args...)
}
