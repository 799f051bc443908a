package lease

import (
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
	Save   bool   // ReapUndeploy: save the VMs' state
	Err    string // set when doing it failed
}

// Leased is what the reaper decides on: one object with its lease.
type Leased struct {
	Object string
	Name   string
	State  string // configuration state; "" for archives
	Lease  store.Lease
}

// Plan decides what the reaper does at now. It is pure, so that its rules
// are tested apart from the actions.
func Plan(now time.Time, p Policy, items []Leased) []ReapAction {
	var out []ReapAction
	for _, it := range items {
		l := it.Lease
		act := func(action string) ReapAction { return ReapAction{Action: action, Object: it.Object, Name: it.Name} }
		if it.Object == ObjectConfig {
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
// lease.
func Load(tx store.Tx) ([]Leased, error) {
	leases, err := tx.Leases().List()
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
			out = append(out, Leased{Object: object, Name: c.Name, State: c.State, Lease: l})
		} else if a, ok := archives[l.ArchiveID]; ok {
			out = append(out, Leased{Object: ObjectArchive, Name: a.Name, Lease: l})
		}
	}
	return out, nil
}
