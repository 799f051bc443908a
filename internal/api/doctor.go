package api

import (
	"context"
	"net/http"

	"stagehand/internal/lab"
)

// Checks is what the status and doctor endpoints need (*lab.Service).
type Checks interface {
	// Status counts what the lab holds and says where the accelerator
	// choice stands; it never waits for the probe.
	Status(ctx context.Context) (*lab.StatusView, error)
	Doctor(ctx context.Context, repair bool) (*lab.DoctorReport, error)
}

func (h *Handler) doctor(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Checks.Doctor(r.Context(), false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doctorToWire(rep))
}

func (h *Handler) doctorRepair(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Checks.Doctor(r.Context(), true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doctorToWire(rep))
}
