package wire

import "time"

// LeasePolicy is a workspace's graduated lease policy (GET and PUT
// /workspaces/{org}/{name}/lease-policy).
type LeasePolicy struct {
	Workspace string `json:"workspace"`
	// Ladder is its steps, "warn=1h,suspend,undeploy=1d,archive=7d,delete=30d"
	// (warn's length before the deployment lease's expiry, the others'
	// after it), or "none": the daemon's ladder applies.
	Ladder string      `json:"ladder"`
	Steps  []LeaseStep `json:"steps"`
	// WebhookURL receives each step's notice (none: the daemon's
	// webhook, if any); WebhookSigned says whether a secret signs it (the
	// secret itself is never shown).
	WebhookURL    string `json:"webhook_url,omitempty"`
	WebhookSigned bool   `json:"webhook_signed"`
}

// LeaseStep is one step of a ladder: its offset from the deployment
// lease's expiry in seconds (negative before it).
type LeaseStep struct {
	Step          string `json:"step"`
	OffsetSeconds int64  `json:"offset_seconds"`
}

// LeasePolicyRequest is the body of PUT
// /workspaces/{org}/{name}/lease-policy: it replaces the policy; an empty
// ladder ("" or "none") with no webhook removes it.
type LeasePolicyRequest struct {
	Ladder        string `json:"ladder"`
	WebhookURL    string `json:"webhook_url,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
}

// LeaseLadder is where a configuration's deployment is on its lease ladder
// (Lease.Ladder, in `config show`); omitted when no ladder applies.
type LeaseLadder struct {
	// Policy is whose ladder: "daemon" or "workspace ORG/NAME".
	Policy string    `json:"policy"`
	Step   string    `json:"step,omitempty"` // the last step taken
	StepAt time.Time `json:"step_at,omitzero"`
	// Expires is the deployment lease's expiry the ladder counts from.
	Expires time.Time `json:"expires,omitzero"`
	// Cancelled: the lease was extended after a step; no later step
	// happens until the next deploy.
	Cancelled bool      `json:"cancelled,omitempty"`
	Next      string    `json:"next,omitempty"`
	NextAt    time.Time `json:"next_at,omitzero"`
}
