package api

import (
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// statusOf is the one place where an error kind becomes an HTTP status and a
// wire kind. An error of no known kind is internal.
func statusOf(err error) (int, string) {
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
	default:
		return http.StatusInternalServerError, wire.KindInternal
	}
}

// writeError answers with err's status and the error body. Internal errors
// are logged here, since they are bugs or environment failures the user
// cannot fix by changing the request.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, kind := statusOf(err)
	if status == http.StatusInternalServerError {
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
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
