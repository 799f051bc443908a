package api

import (
	"context"
	"net/http"
	"stagehand/internal/lab"

	"stagehand/internal/api/wire"
)

// Library is what the library endpoints need (lab.Library).
type Library interface {
	Capture(ctx context.Context, config, name string, opts lab.CreateOptions) (*lab.ConfigView, error)
	Checkout(ctx context.Context, entry, name string, opts lab.CreateOptions) (*lab.ConfigView, error)
	List(ctx context.Context) ([]lab.ConfigView, error)
	Get(ctx context.Context, name string) (*lab.ConfigView, error)
	Delete(ctx context.Context, name string) error
}

func (h *Handler) capture(w http.ResponseWriter, r *http.Request) error {
	var req wire.CaptureRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	c, err := h.lab.Library.Capture(r.Context(), req.Config, req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("library", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h *Handler) checkout(w http.ResponseWriter, r *http.Request) error {
	var req wire.CheckoutRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	c, err := h.lab.Library.Checkout(r.Context(), r.PathValue("name"), req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h *Handler) listLibrary(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.lab.Library.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, cs, configToWire)
}

func (h *Handler) getLibraryEntry(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.Library.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) deleteLibraryEntry(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Library.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
