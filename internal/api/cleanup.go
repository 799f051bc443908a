package api

import (
	"net/http"
	"strconv"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

func (h leasesHandler) cleanupView(w http.ResponseWriter, r *http.Request) error {
	days := 0
	if s := r.URL.Query().Get("idle_days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return errMalformed("idle_days %q is not a number of days", s)
		}
		days = n
	}
	rep, err := h.lab.Cleanup(r.Context(), lab.CleanupOptions{IdleDays: days})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, cleanupToWire(rep))
}

func (h leasesHandler) cleanupApply(w http.ResponseWriter, r *http.Request) error {
	var req wire.CleanupRequest
	if err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	rep, err := h.lab.Cleanup(r.Context(), lab.CleanupOptions{IdleDays: req.IdleDays, Apply: true, DryRun: req.DryRun})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, cleanupToWire(rep))
}
