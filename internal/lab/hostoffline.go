package lab

import (
	"errors"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/doctor"
	"stagehand/internal/store"
)

// ProblemStateDiffers is a doctor's finding: a configuration of this host
// whose recorded state is not what runs (lab/doctor).
const ProblemStateDiffers = doctor.ProblemStateDiffers

// StateHostOffline is the state a configuration shows while its home host
// is offline (cluster.Offline): whatever the store last recorded, nobody
// can tell whether its VMs still run, and nothing can be done to it until
// the host returns. It is never restarted elsewhere meanwhile: a host cut
// off the network may still run it, and a second copy would write to the
// same addresses with a diverging disk (docs/decisions.md).
const StateHostOffline = "host offline"

// homes says which hosts are offline, read once per view (a list reads
// each host once).
type homes struct {
	self    string
	now     time.Time
	offline map[string]bool
}

// state is c's state as users see it: StateHostOffline while its home
// (another host) is offline, else the recorded one.
func (h *homes) state(tx store.Tx, c *store.Config) string {
	if c.Host == "" || c.Host == h.self || h.self == "" {
		return c.State // this host's own: it answers, so it is online
	}
	if h.offline == nil {
		h.offline = map[string]bool{}
	}
	off, ok := h.offline[c.Host]
	if !ok {
		x, err := tx.Hosts().Get(c.Host)
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			off = true // a home nobody registers is nowhere to be seen
		case err == nil:
			off = cluster.Offline(*x, h.now)
		}
		h.offline[c.Host] = off
	}
	if off {
		return StateHostOffline
	}
	return c.State
}
