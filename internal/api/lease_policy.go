package api

import (
	"errors"
	"net/http"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/lease"
	"stagehand/internal/store"
)

// A workspace's graduated lease policy (package lease): its ladder of
// steps after a deployment lease runs out and the webhook told of each. It
// is a setting of the workspace, so its admins (workspace.admin) read and
// set it; the reaper reads it from the store on each pass.

func (h workspacesHandler) getLeasePolicy(w http.ResponseWriter, r *http.Request) error {
	if err := h.checkWorkspace(r.Context(), auth.WorkspaceAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	return viewJSON(w, r, h.store, func(tx store.Tx) (wire.LeasePolicy, error) {
		_, ws, err := workspaceAt(tx, r)
		if err != nil {
			return wire.LeasePolicy{}, err
		}
		var l lease.Ladder
		p, err := tx.LeasePolicies().Get(ws.ID)
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
		case err != nil:
			return wire.LeasePolicy{}, err
		default:
			if l, err = lease.DecodeLadder(p.Policy); err != nil {
				return wire.LeasePolicy{}, err
			}
		}
		return leasePolicyToWire(pathWorkspace(r), l), nil
	})
}

func (h workspacesHandler) setLeasePolicy(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeasePolicyRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := h.checkWorkspace(r.Context(), auth.WorkspaceAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	l, err := lease.ParseLadder(req.Ladder)
	if err != nil {
		return err
	}
	if req.WebhookSecret != "" && req.WebhookURL == "" {
		return errdefs.Invalid("lease policy of %s: a webhook secret needs a webhook URL", pathWorkspace(r))
	}
	l.Webhook = lease.Webhook{URL: req.WebhookURL, Secret: req.WebhookSecret}
	if err := l.Check(); err != nil {
		return err
	}
	doc, err := lease.EncodeLadder(l)
	if err != nil {
		return err
	}
	c := callerOf(r.Context())
	out, err := updated(r.Context(), h.directory, func(tx store.Tx) (wire.LeasePolicy, error) {
		_, ws, err := workspaceAt(tx, r)
		if err != nil {
			return wire.LeasePolicy{}, err
		}
		if l.IsZero() && l.Webhook.URL == "" {
			if err := tx.LeasePolicies().Delete(ws.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				return wire.LeasePolicy{}, err
			}
		} else if err := tx.LeasePolicies().Put(&store.LeasePolicy{WorkspaceID: ws.ID, Policy: doc}); err != nil {
			return wire.LeasePolicy{}, err
		}
		detail := "ladder " + l.String()
		if l.Webhook.URL != "" {
			detail += ", webhook " + l.Webhook.URL
			if l.Webhook.Secret != "" {
				detail += " (signed)"
			}
		}
		if err := record(tx, c, "workspace", "set-lease-policy", pathWorkspace(r), detail); err != nil {
			return wire.LeasePolicy{}, err
		}
		return leasePolicyToWire(pathWorkspace(r), l), nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func leasePolicyToWire(workspace string, l lease.Ladder) wire.LeasePolicy {
	out := wire.LeasePolicy{Workspace: workspace, Ladder: l.String(), Steps: []wire.LeaseStep{},
		WebhookURL: l.Webhook.URL, WebhookSigned: l.Webhook.Secret != ""}
	for _, st := range l.Steps {
		out.Steps = append(out.Steps, wire.LeaseStep{Step: st.Step, OffsetSeconds: int64(st.Offset / time.Second)})
	}
	return out
}

func ladderToWire(s lab.LadderState) *wire.LeaseLadder {
	if s.Policy == "" {
		return nil
	}
	return &wire.LeaseLadder{Policy: s.Policy, Step: s.Step, StepAt: s.At, Expires: s.Expires, Cancelled: s.Cancelled,
		Next: s.Next, NextAt: s.NextAt}
}
