// Package lease holds the rules of storage and deployment leases: how a
// lease length is read, the daemon's lease policy and its defaults, and the
// reaper's plan — what is due at a given time — as pure functions of the
// store's leases and the clock, which the lab then carries out.
package lease

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"stagehand/internal/errdefs"
)

// Cleanup policies.
const (
	CleanupNotify = "notify" // expired objects are marked and reported only
	CleanupDelete = "delete" // expired objects are deleted after the grace period
)

// Defaults of Policy.
const (
	DefaultGrace          = 7 * 24 * time.Hour
	DefaultReapInterval   = time.Minute
	DefaultEventRetention = 90 * 24 * time.Hour
)

// Kinds of leased objects, as the lab's events name them.
const (
	ObjectConfig  = "config"
	ObjectLibrary = "library"
	ObjectArchive = "archive"
)

// Policy holds the daemon-wide lease defaults and the reaper's policy.
type Policy struct {
	// DefaultStorage is the storage lease of new configurations, library
	// entries and archives; 0 means never.
	DefaultStorage time.Duration
	// DefaultDeploy is the deployment lease of new configurations; 0 means
	// never.
	DefaultDeploy time.Duration
	// Cleanup is CleanupNotify (default) or CleanupDelete.
	Cleanup string
	// Grace is how long an expired object is kept before the delete policy
	// deletes it (default DefaultGrace).
	Grace time.Duration
	// ReapInterval is how often the reaper runs (default
	// DefaultReapInterval).
	ReapInterval time.Duration
	// EventRetention is how long events are kept (default
	// DefaultEventRetention).
	EventRetention time.Duration
	// Ladder is the daemon's graduated lease policy: the steps of
	// workspaces without their own, and the webhook of those without
	// their own (zero: the one-step rule, no webhook).
	Ladder Ladder
	// WebhookAllowLoopback lets the ladders' webhooks reach loopback
	// addresses (serve --lease-webhook-allow-loopback; see package
	// webhook).
	WebhookAllowLoopback bool
}

// WithDefaults checks p and returns it with the defaults filled in.
func (p Policy) WithDefaults() (Policy, error) {
	switch p.Cleanup {
	case "":
		p.Cleanup = CleanupNotify
	case CleanupNotify, CleanupDelete:
	default:
		return p, fmt.Errorf("lab: cleanup policy %q is not %s or %s", p.Cleanup, CleanupNotify, CleanupDelete)
	}
	if p.DefaultStorage < 0 || p.DefaultDeploy < 0 || p.Grace < 0 || p.ReapInterval < 0 || p.EventRetention < 0 {
		return p, fmt.Errorf("lab: lease durations must not be negative")
	}
	if err := p.Ladder.Check(); err != nil {
		return p, fmt.Errorf("lab: daemon lease policy: %w", err)
	}
	if p.Grace == 0 {
		p.Grace = DefaultGrace
	}
	if p.ReapInterval == 0 {
		p.ReapInterval = DefaultReapInterval
	}
	if p.EventRetention == 0 {
		p.EventRetention = DefaultEventRetention
	}
	return p, nil
}

// Parse reads a lease length: "never" (0), a number of days ("30d"),
// weeks ("2w"), or a Go duration ("8h", "90m", "1h30m").
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "never" {
		return 0, nil
	}
	bad := errdefs.Invalid("lease %q is not \"never\", a number of days (30d), weeks (2w) or a duration (8h, 90m)", s)
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return 0, bad
		}
		d = time.Duration(v * float64(24*time.Hour))
	} else if n, ok := strings.CutSuffix(s, "w"); ok {
		v, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return 0, bad
		}
		d = time.Duration(v * float64(7*24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d <= 0 {
		return 0, errdefs.Invalid("lease %q must be positive (or \"never\")", s)
	}
	return d, nil
}
