package hostlink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"stagehand/internal/errdefs"
)

// The host endpoints of a spread deployment (`config deploy --fenced
// --spread`): the home host of a configuration moves one VM's tops to the
// host placement chose for it (…/vms/{vm}/adopt, then the old holder's
// …/vms/{vm}/release), and starts and stops that host's part of the
// deployment (…/part/start, …/part/stop). As with a move, the caller is
// the verified host of the credential, never a name in the request.

// SpreadMember is this host's side of a spread deployment (the lab).
type SpreadMember interface {
	// AdoptVM makes this host the holder of VM vm's tops, pulling them
	// from from, their holder, with the frozen layers this host lacks.
	AdoptVM(ctx context.Context, config, vm, from string) (AdoptResult, error)
	// ReleaseVM removes this host's copies of VM vm's tops once the store
	// names another holder (from asks, having taken them).
	ReleaseVM(ctx context.Context, config, vm, from string) error
	// StartPart and StopPart start and stop this host's part of the
	// deployment of config, whose home from is; with saveState StopPart
	// suspends its VMs to their state files instead of powering them
	// off (an undeploy --save-state).
	StartPart(ctx context.Context, config, from string) error
	StopPart(ctx context.Context, config, from string, saveState bool) error
}

// PartStop is the body of …/part/stop.
type PartStop struct {
	SaveState bool `json:"save_state,omitempty"`
}

func (s *Server) serveSpread(m SpreadMember) {
	s.mux.HandleFunc("POST "+configsPath+"{name}/vms/{vm}/adopt", func(w http.ResponseWriter, r *http.Request) {
		res, err := m.AdoptVM(r.Context(), r.PathValue("name"), r.PathValue("vm"), caller(r))
		if err != nil {
			s.fail(w, r, "", fmt.Errorf("adopt VM %q of %q: %w", r.PathValue("vm"), r.PathValue("name"), err))
			return
		}
		writeJSON(w, res)
	})
	s.mux.HandleFunc("POST "+configsPath+"{name}/vms/{vm}/release", func(w http.ResponseWriter, r *http.Request) {
		if err := m.ReleaseVM(r.Context(), r.PathValue("name"), r.PathValue("vm"), caller(r)); err != nil {
			s.fail(w, r, "", fmt.Errorf("release VM %q of %q: %w", r.PathValue("vm"), r.PathValue("name"), err))
			return
		}
		writeJSON(w, struct{}{})
	})
	s.mux.HandleFunc("POST "+configsPath+"{name}/part/start", func(w http.ResponseWriter, r *http.Request) {
		if err := m.StartPart(r.Context(), r.PathValue("name"), caller(r)); err != nil {
			s.fail(w, r, "", fmt.Errorf("start this host's part of %q: %w", r.PathValue("name"), err))
			return
		}
		writeJSON(w, struct{}{})
	})
	s.mux.HandleFunc("POST "+configsPath+"{name}/part/stop", func(w http.ResponseWriter, r *http.Request) {
		var req PartStop
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			s.fail(w, r, "", errdefs.Invalid("stop request: %v", err))
			return
		}
		if err := m.StopPart(r.Context(), r.PathValue("name"), caller(r), req.SaveState); err != nil {
			s.fail(w, r, "", fmt.Errorf("stop this host's part of %q: %w", r.PathValue("name"), err))
			return
		}
		writeJSON(w, struct{}{})
	})
}

func vmPath(config, vm, verb string) string {
	return configsPath + url.PathEscape(config) + "/vms/" + url.PathEscape(vm) + "/" + verb
}

// AdoptVM asks peer to take VM vm of config from this host (see
// SpreadMember).
func (p *Puller) AdoptVM(ctx context.Context, peer Peer, config, vm string) (AdoptResult, error) {
	var res AdoptResult
	if err := p.call(ctx, peer, vmPath(config, vm, "adopt"), struct{}{}, &res); err != nil {
		return AdoptResult{}, fmt.Errorf("host %q adopting VM %q of %q: %w", peer.Name, vm, config, err)
	}
	return res, nil
}

// ReleaseVM asks peer to remove its copies of VM vm's tops, which this
// host has taken.
func (p *Puller) ReleaseVM(ctx context.Context, peer Peer, config, vm string) error {
	if err := p.call(ctx, peer, vmPath(config, vm, "release"), struct{}{}, nil); err != nil {
		return fmt.Errorf("host %q releasing VM %q of %q: %w", peer.Name, vm, config, err)
	}
	return nil
}

// StartPart asks peer to start its part of config's spread deployment.
func (p *Puller) StartPart(ctx context.Context, peer Peer, config string) error {
	if err := p.call(ctx, peer, configsPath+url.PathEscape(config)+"/part/start", struct{}{}, nil); err != nil {
		return fmt.Errorf("host %q starting its part of %q: %w", peer.Name, config, err)
	}
	return nil
}

// StopPart asks peer to stop its part of config's spread deployment,
// saving its VMs' states with saveState.
func (p *Puller) StopPart(ctx context.Context, peer Peer, config string, saveState bool) error {
	if err := p.call(ctx, peer, configsPath+url.PathEscape(config)+"/part/stop", PartStop{SaveState: saveState}, nil); err != nil {
		return fmt.Errorf("host %q stopping its part of %q: %w", peer.Name, config, err)
	}
	return nil
}
