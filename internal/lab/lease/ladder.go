package lease

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Graduated leases: a ladder of steps a deployment goes down once its
// deployment lease runs out, each at a time relative to the expiry T:
// warn at T−x (an event and a webhook), suspend at T (undeploy saving
// state), undeploy at T+a (discard the saved state), archive at T+b, delete
// at T+c. Every step is optional; a workspace without a ladder (and a
// daemon without a default one) keeps the one-step rule of Plan: undeploy
// at T as the configuration's on-expiry says.
//
// The step a deployment reached is in its lease record (LadderStep, with
// the expiry it counts from in LadderExpires), so a restart or a new
// leader continues where the last one stopped and never takes a step
// twice. Extending the deployment lease before suspend starts the ladder
// again from the new expiry; extending it (or the storage lease) after
// suspend cancels the later steps and leaves the configuration suspended;
// a new deploy starts a new ladder.

// Steps of a ladder, in the order they happen.
const (
	StepWarn     = "warn"
	StepSuspend  = "suspend"
	StepUndeploy = "undeploy"
	StepArchive  = "archive"
	StepDelete   = "delete"
)

var stepOrder = []string{StepWarn, StepSuspend, StepUndeploy, StepArchive, StepDelete}

func stepRank(step string) int { return slices.Index(stepOrder, step) }

// Step is one rung of a ladder.
type Step struct {
	Step string `json:"step"`
	// Offset is the step's time relative to the deployment lease's
	// expiry: negative for warn (before), 0 for suspend, 0 or more after.
	Offset time.Duration `json:"offset"`
}

// Webhook is where the steps of a ladder are posted.
type Webhook struct {
	URL string `json:"url,omitempty"`
	// Secret, when set, signs each body: HMAC-SHA256 in the
	// X-Stagehand-Signature header ("sha256=" and the hex digest).
	Secret string `json:"secret,omitempty"`
}

// Ladder is a graduated lease policy: its steps in order and its webhook.
// A workspace's ladder without steps takes the daemon's steps, one without
// a webhook the daemon's webhook. The zero Ladder is none.
type Ladder struct {
	Steps   []Step  `json:"steps,omitempty"`
	Webhook Webhook `json:"webhook,omitzero"`
}

// IsZero reports whether l has no steps (the one-step rule applies).
func (l Ladder) IsZero() bool { return len(l.Steps) == 0 }

// ParseLadder reads a ladder written as its steps separated by commas:
// "warn=1h,suspend,undeploy=1d,archive=7d,delete=30d" — warn's length is
// before the expiry, the others' after it (suspend is at it); "" or "none"
// is no ladder. Lengths are read as leases are (Parse), "0" too.
func ParseLadder(s string) (Ladder, error) {
	s = strings.TrimSpace(s)
	var l Ladder
	if s == "" || s == "none" {
		return l, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, length, hasLength := strings.Cut(strings.TrimSpace(part), "=")
		if stepRank(name) < 0 {
			return Ladder{}, errdefs.Invalid("lease ladder %q: step %q is not one of %s", s, name, strings.Join(stepOrder, ", "))
		}
		var d time.Duration
		switch {
		case name == StepSuspend && hasLength:
			return Ladder{}, errdefs.Invalid("lease ladder %q: suspend is at the expiry; it takes no length", s)
		case name == StepSuspend:
		case !hasLength:
			return Ladder{}, errdefs.Invalid("lease ladder %q: step %s needs a length (%s=1h)", s, name, name)
		case strings.TrimSpace(length) == "0":
		default:
			var err error
			if d, err = Parse(length); err != nil || d == 0 {
				return Ladder{}, errdefs.Invalid("lease ladder %q: step %s: length %q is not a number of days (2d), weeks (1w) or a duration (90s, 8h)", s, name, length)
			}
		}
		if name == StepWarn {
			d = -d
		}
		l.Steps = append(l.Steps, Step{Step: name, Offset: d})
	}
	return l, l.Check()
}

// String writes l as ParseLadder reads it.
func (l Ladder) String() string {
	if l.IsZero() {
		return "none"
	}
	var parts []string
	for _, st := range l.Steps {
		switch {
		case st.Step == StepSuspend:
			parts = append(parts, st.Step)
		case st.Offset == 0:
			parts = append(parts, st.Step+"=0")
		case st.Step == StepWarn:
			parts = append(parts, st.Step+"="+(-st.Offset).String())
		default:
			parts = append(parts, st.Step+"="+st.Offset.String())
		}
	}
	return strings.Join(parts, ",")
}

// Check refuses a ladder whose steps are repeated, out of order, at times
// that go back, or that never ends the deployment: a ladder with steps
// must suspend or undeploy it, and archive and delete come after that.
func (l Ladder) Check() error {
	if l.Webhook.URL != "" {
		if err := CheckWebhookURL(l.Webhook.URL); err != nil {
			return err
		}
	}
	if l.IsZero() {
		return nil // a webhook alone: the daemon's ladder, posted here
	}
	last, prev := -1, time.Duration(-1<<63)
	for _, st := range l.Steps {
		r := stepRank(st.Step)
		switch {
		case r < 0:
			return errdefs.Invalid("lease ladder: step %q is not one of %s", st.Step, strings.Join(stepOrder, ", "))
		case r <= last:
			return errdefs.Invalid("lease ladder %s: steps must be given once each, in the order %s", l, strings.Join(stepOrder, ", "))
		case st.Step == StepWarn && st.Offset > 0, st.Step == StepSuspend && st.Offset != 0, st.Step != StepWarn && st.Offset < 0:
			return errdefs.Invalid("lease ladder %s: warn comes before the expiry, suspend at it, the others after it", l)
		case st.Offset < prev:
			return errdefs.Invalid("lease ladder %s: %s at %s after the expiry is before the step ahead of it", l, st.Step, st.Offset)
		}
		last, prev = r, st.Offset
	}
	if !l.Has(StepSuspend) && !l.Has(StepUndeploy) {
		return errdefs.Invalid("lease ladder %s: it must suspend or undeploy the deployment (add suspend or undeploy=0)", l)
	}
	return nil
}

// Has reports whether l has step.
func (l Ladder) Has(step string) bool {
	return slices.ContainsFunc(l.Steps, func(st Step) bool { return st.Step == step })
}

// after returns the first step of l after step ("" is before the first).
func (l Ladder) after(step string) (Step, bool) {
	r := stepRank(step)
	for _, st := range l.Steps {
		if stepRank(st.Step) > r {
			return st, true
		}
	}
	return Step{}, false
}

// CheckWebhookURL refuses a webhook URL that is not an absolute http or
// https URL with a host, or that carries credentials (they would be
// logged; sign with the secret instead). Which addresses it may reach is
// the sender's rule, checked on each connection (see package webhook).
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errdefs.Invalid("webhook URL %q: %v", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return errdefs.Invalid("webhook URL %q: the scheme must be http or https", raw)
	case u.Host == "" || u.Hostname() == "":
		return errdefs.Invalid("webhook URL %q has no host", raw)
	case u.User != nil:
		return errdefs.Invalid("webhook URL %q carries credentials; give a secret to sign the body instead", raw)
	case u.Fragment != "":
		return errdefs.Invalid("webhook URL %q has a fragment", raw)
	}
	return nil
}

// EncodeLadder writes l as a workspace's lease policy is stored.
func EncodeLadder(l Ladder) (string, error) {
	b, err := json.Marshal(l)
	return string(b), err
}

// DecodeLadder reads a stored lease policy.
func DecodeLadder(s string) (Ladder, error) {
	var l Ladder
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return Ladder{}, fmt.Errorf("lease policy: %w", err)
	}
	return l, nil
}

// Reaper actions of the ladder's steps (also the events' actions).
const (
	ReapWarn           = "lease-warn"
	ReapSuspend        = "lease-suspend"
	ReapLadderUndeploy = "lease-undeploy"
	ReapArchive        = "lease-archive"
	ReapLadderDelete   = "lease-delete"
)

var stepActions = map[string]string{StepWarn: ReapWarn, StepSuspend: ReapSuspend, StepUndeploy: ReapLadderUndeploy,
	StepArchive: ReapArchive, StepDelete: ReapLadderDelete}

// LadderState is where a configuration's deployment is on its ladder.
type LadderState struct {
	Policy string // "daemon" or "workspace ORG/NAME"; "" when no ladder applies
	Step   string // the last step taken, "" none
	At     time.Time
	// Expires is the expiry the ladder counts from (zero: none running).
	Expires time.Time
	// Cancelled: a step was taken, then the lease was extended, so the
	// later steps will not happen.
	Cancelled bool
	Next      string // the next step, "" none
	NextAt    time.Time
}

// State returns where it is on its ladder.
func (it Leased) LadderState() LadderState {
	if it.Ladder.IsZero() || it.Object != ObjectConfig {
		return LadderState{}
	}
	l := it.Lease
	s := LadderState{Policy: it.Policy, Step: l.LadderStep, At: l.LadderAt, Expires: l.LadderExpires}
	if s.Expires.IsZero() {
		if s.Step != "" {
			s.Cancelled = true
			return s
		}
		if it.State != store.StateDeployed && it.State != store.StateFailed {
			return s
		}
		s.Expires = l.DeployExpires
	}
	if s.Expires.IsZero() {
		return s
	}
	// A deployment undeployed by hand before the ladder suspended it
	// leaves the ladder: nothing later applies to it.
	if it.State == store.StateUndeployed && stepRank(s.Step) < stepRank(StepSuspend) {
		s.Expires = time.Time{}
		return s
	}
	if next, ok := it.Ladder.after(s.Step); ok {
		s.Next, s.NextAt = next.Step, s.Expires.Add(next.Offset)
	}
	return s
}

// planLadder returns the step of the ladder due at now, if any: the next
// one once its time has come and the configuration is in a state it
// applies to.
func planLadder(now time.Time, it Leased) (ReapAction, bool) {
	s := it.LadderState()
	if s.Next == "" || now.Before(s.NextAt) {
		return ReapAction{}, false
	}
	a := ReapAction{Action: stepActions[s.Next], Object: it.Object, Name: it.Name, Step: s.Next, From: s.Step,
		Policy: s.Policy, Expires: s.Expires}
	deployed := it.State == store.StateDeployed || it.State == store.StateFailed
	switch s.Next {
	case StepWarn:
		return a, it.State == store.StateDeployed
	case StepSuspend:
		// A failed deployment is undeployed discarding state, as the
		// one-step rule does: saving is what may have failed.
		a.Save = it.State == store.StateDeployed
		return a, deployed
	case StepUndeploy:
		a.Running = deployed
		return a, deployed || it.State == store.StateUndeployed
	default: // archive, delete: of what the ladder undeployed
		return a, it.State == store.StateUndeployed
	}
}

// ArchiveName is the name of the archive the ladder's archive step makes
// of config for the deployment that expired at expires: the same on every
// try, so a step retried after a failure finds the archive it made.
func ArchiveName(config string, expires time.Time) string {
	return config + "-expired-" + expires.UTC().Format("20060102t150405")
}
