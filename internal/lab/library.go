package lab

import (
	"context"
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// The library: read-only copies of configurations, made and used by linked
// clone. A library entry is a configuration of kind library: it shares the
// configurations' name space and records (VMs, NICs, layers, addresses), but
// it is never deployed, never changed (addresses, consolidation) and never
// cloned into; checking it out makes a new workspace configuration by
// linked clone. Its disks' tops stay empty, so a checkout builds directly on
// the layers the capture froze (the empty-delta shortcut), and deleting an
// entry keeps every frozen layer a checkout still builds on.

// Capture copies an undeployed configuration into the library as entry
// name, by linked clone. Like any linked clone it freezes the configuration's
// top layers (those holding data) and gives it new ones, and copies no data.
// The entry gets its storage lease as opts says.
func (s Library) Capture(ctx context.Context, config, name string, opts CreateOptions) (*ConfigView, error) {
	if err := s.requireKind(ctx, config, store.KindConfig, "capture it (check the entry out first)"); err != nil {
		return nil, fmt.Errorf("capture %q: %w", config, err)
	}
	clone := s.linkedClone
	if opts.WithState { // the entry keeps the state; its checkouts share it
		clone = instantClones{s.core}.cloneWithState
	}
	v, err := clone(ctx, config, name, store.KindLibrary, opts, false)
	if err != nil {
		return nil, err
	}
	s.events.record(ctx, ObjectLibrary, "capture", name, "captured from "+config)
	return v, nil
}

// Checkout makes a new workspace configuration from a library entry by
// linked clone, with its storage lease as opts says, and marks the entry
// used.
func (s Library) Checkout(ctx context.Context, entry, name string, opts CreateOptions) (*ConfigView, error) {
	if err := s.requireKind(ctx, entry, store.KindLibrary, "check it out (use config clone)"); err != nil {
		return nil, fmt.Errorf("check out %q: %w", entry, err)
	}
	// An entry captured with its state gives every checkout that state
	// (shared, and so deployed fenced only).
	clone := s.linkedClone
	if err := s.store.View(ctx, func(tx store.Tx) error {
		e, err := tx.Configs().Get(entry)
		if err == nil && e.InstantOf != "" {
			clone, opts.WithState = instantClones{s.core}.cloneWithState, true
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("check out %q: %w", entry, err)
	}
	v, err := clone(ctx, entry, name, store.KindConfig, opts, true)
	if err != nil {
		return nil, err
	}
	s.events.record(ctx, ObjectConfig, "checkout", name, "checked out from library entry "+entry)
	return v, nil
}

// ListLibrary returns the library entries the caller may see.
func (s Library) List(ctx context.Context) ([]ConfigView, error) { return s.ListIn(ctx, "") }

// ListIn returns the library entries the caller may see in workspace
// ("ws" or "org/ws"; "" every workspace).
func (s Library) ListIn(ctx context.Context, workspace string) ([]ConfigView, error) {
	return Configs{s.core}.listIn(ctx, workspace, true)
}

// GetLibraryEntry returns one library entry.
func (s Library) Get(ctx context.Context, name string) (*ConfigView, error) {
	return viewIn(ctx, s.store, func(tx store.Tx) (*ConfigView, error) {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return nil, errdefs.NotFound("library entry %q not found", name)
		}
		if c.Kind != store.KindLibrary {
			return nil, errdefs.NotFound("library entry %q not found (%q is a configuration)", name, name)
		}
		return s.views.config(tx, c)
	})
}

// DeleteLibraryEntry deletes a library entry: its own (empty) layers, and
// the frozen layers nothing else builds on any more.
func (s Library) Delete(ctx context.Context, name string) error {
	return s.deleteConfig(ctx, name, store.KindLibrary)
}

// requireKind checks that configuration name is of kind; what says what
// the caller wanted to do, for the error.
func (s *core) requireKind(ctx context.Context, name, kind, what string) error {
	return s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			if kind == store.KindLibrary {
				return errdefs.NotFound("library entry %q not found", name)
			}
			return err
		}
		return checkKind(c, kind, what)
	})
}

// checkKind refuses c when it is not of kind.
func checkKind(c *store.Config, kind, what string) error {
	switch {
	case c.Kind == kind:
		return nil
	case c.Kind == store.KindLibrary:
		return errdefs.Conflict("%q is a library entry, which is read-only: cannot %s", c.Name, what)
	default:
		return errdefs.Conflict("%q is a configuration, not a library entry: cannot %s", c.Name, what)
	}
}

// touch marks a configuration, library entry or archive used now.
func (s *core) touch(ctx context.Context, object, name string) {
	err := s.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		l, err := s.leaseOf(tx, object, name)
		if err != nil {
			return err
		}
		l.LastUsed = s.now()
		return tx.Leases().Put(l)
	})
	if err != nil {
		s.log.Warn("mark used", "object", object, "name", name, "err", err)
	}
}
