package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Checks is what the status and doctor endpoints need (*lab.Service).
type Checks interface {
	// Status counts what the lab holds and says where the accelerator
	// choice stands; it never waits for the probe.
	Status(ctx context.Context) (*lab.StatusView, error)
	Doctor(ctx context.Context, repair bool) (*lab.DoctorReport, error)
}

// doctorHandler serves the doctor's check and repair.
type doctorHandler struct{ lab Checks }

func (h doctorHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("GET "+p+"/doctor", auth.DoctorRead, noObject, h.check)
	r.route("POST "+p+"/doctor/repair", auth.DoctorRepair, noObject, h.repair)
}

func (h doctorHandler) check(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Doctor(r.Context(), false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doctorToWire(rep))
}

func (h doctorHandler) repair(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Doctor(r.Context(), true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doctorToWire(rep))
}
