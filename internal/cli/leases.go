package cli

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// leaseHelp is the help text of every flag that takes a lease: how long a
// configuration, library entry or archive is kept (storage), or how long a
// deployment runs (deploy).
const leaseHelp = `"never", days (30d), weeks (2w) or a duration (8h, 90m)`

func (a configCmds) lease() *cobra.Command {
	var req wire.LeaseRequest
	cmd := &cobra.Command{
		Use:   "lease NAME [--storage 60d|never] [--deploy 4h|never] [--on-expiry save-state|discard-state]",
		Short: "Set a configuration's storage and deployment leases (from now)",
		Long: `Set the leases of a configuration (or library entry), counted from now.

  --storage    when the configuration expires: it is then marked for
               cleanup, and deleted after the grace period if the daemon's
               policy says so (never while deployed)
  --deploy     how long each deploy lasts; a deployed configuration gets it
               from now
  --on-expiry  what a deployment lease that runs out does: save-state
               (suspend the VMs, the default) or discard-state (power off)`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			switch req.UndeployAction {
			case "":
			case "save-state", wire.UndeploySave:
				req.UndeployAction = wire.UndeploySave
			case "discard-state", wire.UndeployDiscard:
				req.UndeployAction = wire.UndeployDiscard
			default:
				return usagef("--on-expiry %q is not save-state or discard-state", req.UndeployAction)
			}
			if req.Storage == "" && req.Deploy == "" && req.UndeployAction == "" {
				return usagef("give --storage, --deploy or --on-expiry")
			}
			c, err := a.client.Configs().SetLease(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Storage, "storage", "", "storage lease: "+leaseHelp)
	f.StringVar(&req.Deploy, "deploy", "", "deployment lease: "+leaseHelp)
	f.StringVar(&req.UndeployAction, "on-expiry", "", "when the deployment lease runs out: save-state or discard-state")
	return cmd
}

// storageLeaseText shows a storage lease in a table cell.
func storageLeaseText(l wire.Lease) string {
	switch {
	case !l.ExpiredAt.IsZero() && !l.DeleteAt.IsZero():
		return "expired, deleted at " + when(l.DeleteAt)
	case !l.ExpiredAt.IsZero():
		return "expired " + when(l.StorageExpires)
	case l.StorageExpires.IsZero():
		return "never"
	}
	return "until " + when(l.StorageExpires)
}

// printLease writes a configuration's lease rows.
func printLease(w io.Writer, c *wire.Config) {
	if c.Kind == wire.KindLibrary {
		row(w, "Kind:", "library entry (read-only)")
	}
	row(w, "Storage lease:", storageLeaseText(c.Lease))
	if c.Kind == wire.KindLibrary {
		return
	}
	deploy := "never"
	if c.Lease.DeployLeaseSeconds > 0 {
		deploy = (time.Duration(c.Lease.DeployLeaseSeconds) * time.Second).String()
	}
	if !c.Lease.DeployExpires.IsZero() {
		deploy += ", this deployment until " + when(c.Lease.DeployExpires)
	}
	onExpiry := "save-state"
	if c.Lease.UndeployAction == wire.UndeployDiscard {
		onExpiry = "discard-state"
	}
	if c.Lease.Ladder != nil {
		row(w, "Deploy lease:", deploy+" (then the lease ladder)")
		row(w, "Lease ladder:", ladderText(c.Lease.Ladder))
		return
	}
	row(w, "Deploy lease:", deploy+" (then "+onExpiry+")")
}
