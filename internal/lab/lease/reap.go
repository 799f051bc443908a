package lease

import (
	"fmt"
	"time"

	"stagehand/internal/store"
)

// Reaper actions.
const (
	ReapUndeploy         = "undeploy"           // the deployment lease ran out
	ReapMarkExpired      = "mark-expired"       // the storage lease ran out
	ReapDelete           = "delete"             // expired and past the grace period, delete policy
	ReapStartDeployLease = "start-deploy-lease" // deployed without a running lease (safety net)
	ReapClearDeployLease = "clear-deploy-lease" // undeployed with a running lease (safety net)
)

// ReapAction is one thing the reaper decided to do.
type ReapAction struct {
	Action string
	Object string // ObjectConfig, ObjectLibrary or ObjectArchive
	Name   string
	Save   bool   // ReapUndeploy, ReapSuspend: save the VMs' state
	Err    string // set when doing it failed
	// The ladder's steps (ReapWarn ... ReapLadderDelete): the step, the
	// one taken before it, the policy and the expiry the ladder counts
	// from.
	Step, From, Policy string
	Expires            time.Time
	// Running: the configuration is still deployed (or failed), so the
	// undeploy step undeploys it rather than discard a saved state.
	Running bool
}

// Leased is what the reaper decides on: one object with its lease.
type Leased struct {
	Object string
	Name   string
	State  string // configuration state; "" for archives
	Lease  store.Lease
	// Workspace is the configuration's workspace ("ORG/NAME"); Ladder
	// its lease ladder (its workspace's, else the daemon's; zero: none)
	// and Policy which one that is ("workspace ORG/NAME" or "daemon").
	Workspace string
	Ladder    Ladder
	Policy    string
}

// Plan decides what the reaper does at now. It is pure, so that its rules
// are tested apart from the actions.
func Plan(now time.Time, p Policy, items []Leased) []ReapAction {
	var out []ReapAction
	for _, it := range items {
		l := it.Lease
		act := func(action string) ReapAction { return ReapAction{Action: action, Object: it.Object, Name: it.Name} }
		if it.Object == ObjectConfig && !it.Ladder.IsZero() {
			// The ladder replaces the one-step rule below; the safety
			// nets still apply.
			if a, ok := planLadder(now, it); ok {
				out = append(out, a)
			} else if it.State == store.StateDeployed && l.DeployExpires.IsZero() && l.DeployLease > 0 {
				out = append(out, act(ReapStartDeployLease))
			} else if it.State == store.StateUndeployed && !l.DeployExpires.IsZero() {
				out = append(out, act(ReapClearDeployLease))
			}
		} else if it.Object == ObjectConfig {
			switch {
			case (it.State == store.StateDeployed || it.State == store.StateFailed) && !l.DeployExpires.IsZero() && !now.Before(l.DeployExpires):
				// A failed deployment (a save that failed, VMs lost in a
				// restart) is undeployed discarding state: saving is what
				// may have failed, and retrying it forever helps nobody.
				a := act(ReapUndeploy)
				a.Save = l.UndeployAction != store.UndeployDiscard && it.State == store.StateDeployed
				out = append(out, a)
			case it.State == store.StateDeployed && l.DeployExpires.IsZero() && l.DeployLease > 0:
				out = append(out, act(ReapStartDeployLease))
			case it.State == store.StateUndeployed && !l.DeployExpires.IsZero():
				out = append(out, act(ReapClearDeployLease))
			}
		}
		if l.StorageExpires.IsZero() || now.Before(l.StorageExpires) {
			continue
		}
		switch {
		case l.ExpiredAt.IsZero():
			out = append(out, act(ReapMarkExpired))
		case p.Cleanup == CleanupDelete && !now.Before(l.ExpiredAt.Add(p.Grace)):
			// Never a deployed (or deploying, failed...) configuration:
			// only an undeployed one, whose disks nothing runs on.
			if it.State == "" || it.State == store.StateUndeployed {
				out = append(out, act(ReapDelete))
			}
		}
	}
	return out
}

// Load reads every configuration, library entry and archive that has a
// lease, each configuration with its workspace's ladder, else daemon's.
func Load(tx store.Tx, daemon Ladder) ([]Leased, error) {
	leases, err := tx.Leases().List()
	if err != nil {
		return nil, err
	}
	ladders, err := newLadders(tx, daemon)
	if err != nil {
		return nil, err
	}
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	as, err := tx.Archives().List()
	if err != nil {
		return nil, err
	}
	configs := map[int64]store.Config{}
	for _, c := range cs {
		configs[c.ID] = c
	}
	archives := map[int64]store.Archive{}
	for _, a := range as {
		archives[a.ID] = a
	}
	var out []Leased
	for _, l := range leases {
		if c, ok := configs[l.ConfigID]; ok {
			object := ObjectConfig
			if c.Kind == store.KindLibrary {
				object = ObjectLibrary
			}
			it := Leased{Object: object, Name: c.Name, State: c.State, Lease: l}
			if object == ObjectConfig {
				if it.Workspace, it.Ladder, it.Policy, err = ladders.of(c.WorkspaceID); err != nil {
					return nil, err
				}
			}
			out = append(out, it)
		} else if a, ok := archives[l.ArchiveID]; ok {
			out = append(out, Leased{Object: ObjectArchive, Name: a.Name, Lease: l})
		}
	}
	return out, nil
}

// ladders resolves the ladder of each workspace in one transaction.
type ladders struct {
	tx       store.Tx
	daemon   Ladder
	policies map[int64]string
	names    map[int64]string
}

func newLadders(tx store.Tx, daemon Ladder) (*ladders, error) {
	ps, err := tx.LeasePolicies().List()
	if err != nil {
		return nil, err
	}
	l := &ladders{tx: tx, daemon: daemon, policies: map[int64]string{}, names: map[int64]string{}}
	for _, p := range ps {
		l.policies[p.WorkspaceID] = p.Policy
	}
	return l, nil
}

// of returns the name of workspace id, its ladder and whose it is.
func (l *ladders) of(id int64) (workspace string, ladder Ladder, policy string, err error) {
	if id != 0 {
		if workspace, err = l.name(id); err != nil {
			return "", Ladder{}, "", err
		}
	}
	var own Ladder
	if p, ok := l.policies[id]; ok {
		if own, err = DecodeLadder(p); err != nil {
			return "", Ladder{}, "", fmt.Errorf("workspace %s: %w", workspace, err)
		}
	}
	ladder, policy = own, "workspace "+workspace
	if own.IsZero() {
		ladder.Steps, policy = l.daemon.Steps, "daemon"
	}
	if ladder.Webhook.URL == "" {
		ladder.Webhook = l.daemon.Webhook
	}
	if ladder.IsZero() {
		return workspace, Ladder{}, "", nil
	}
	return workspace, ladder, policy, nil
}

func (l *ladders) name(id int64) (string, error) {
	if n, ok := l.names[id]; ok {
		return n, nil
	}
	ws, err := l.tx.Workspaces().GetByID(id)
	if err != nil {
		return "", err
	}
	o, err := l.tx.Orgs().GetByID(ws.OrgID)
	if err != nil {
		return "", err
	}
	l.names[id] = o.Name + "/" + ws.Name
	return l.names[id], nil
}

// LoadConfig reads configuration (or library entry) c with its lease, its
// ladder and its workspace, as Load does, in tx: what a step checks again
// in the transaction that records it.
func LoadConfig(tx store.Tx, c *store.Config, daemon Ladder) (Leased, error) {
	l, err := tx.Leases().OfConfig(c.ID)
	if err != nil {
		return Leased{}, err
	}
	it := Leased{Object: ObjectConfig, Name: c.Name, State: c.State, Lease: *l}
	if c.Kind == store.KindLibrary {
		it.Object = ObjectLibrary
		return it, nil
	}
	ladders, err := newLadders(tx, daemon)
	if err != nil {
		return Leased{}, err
	}
	it.Workspace, it.Ladder, it.Policy, err = ladders.of(c.WorkspaceID)
	return it, err
}
