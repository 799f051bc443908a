package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Library is what the library endpoints need (lab.Library).
type Library interface {
	Capture(ctx context.Context, config, name string, opts lab.CreateOptions) (*lab.ConfigView, error)
	Checkout(ctx context.Context, entry, name string, opts lab.CreateOptions) (*lab.ConfigView, error)
	// ListIn lists one workspace ("ws" or "org/ws"), or all for "".
	ListIn(ctx context.Context, workspace string) ([]lab.ConfigView, error)
	Get(ctx context.Context, name string) (*lab.ConfigView, error)
	Delete(ctx context.Context, name string) error
}

// libraryHandler serves the library endpoints.
type libraryHandler struct{ lab Library }

// register adds the library routes. A capture names the configuration
// it captures in its body, not its path: its action is decided on that
// configuration (see auth.LibraryCapture).
func (h libraryHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/library", auth.LibraryCapture, bodyObject("config", "config"), h.capture)
	r.route("GET "+p+"/library", auth.LibraryRead, noObject, h.list)
	r.route("GET "+p+"/library/{name}", auth.LibraryRead, object("library", "name"), h.get)
	r.route("DELETE "+p+"/library/{name}", auth.LibraryDelete, object("library", "name"), h.delete)
	r.route("POST "+p+"/library/{name}/checkout", auth.LibraryCheckout, object("library", "name"), h.checkout)
}

func (h libraryHandler) capture(w http.ResponseWriter, r *http.Request) error {
	var req wire.CaptureRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease, req.Workspace)
	if err != nil {
		return err
	}
	opts.WithState = req.WithState
	c, err := h.lab.Capture(r.Context(), req.Config, req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("library", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h libraryHandler) checkout(w http.ResponseWriter, r *http.Request) error {
	var req wire.CheckoutRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease, req.Workspace)
	if err != nil {
		return err
	}
	c, err := h.lab.Checkout(r.Context(), r.PathValue("name"), req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h libraryHandler) list(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.lab.ListIn(r.Context(), r.URL.Query().Get("workspace"))
	if err != nil {
		return err
	}
	return writeList(w, cs, configToWire)
}

func (h libraryHandler) get(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h libraryHandler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
