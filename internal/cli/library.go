package cli

import (
	"context"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// libraryCmds builds `stagehand library`. Its methods share the app's client, flags and output.
type libraryCmds struct{ *app }

func (a libraryCmds) command() *cobra.Command {
	var captureLease, checkoutLease, captureIn, checkoutIn string
	var captureState bool
	capture := &cobra.Command{
		Use:   "capture CONFIG NAME [--with-state] [--storage-lease 30d|never] [--workspace W]",
		Short: "Copy an undeployed configuration into the library (read-only, by linked clone)",
		Long: `Copy an undeployed configuration into the library as a read-only entry. Like a
linked clone it copies no data: the configuration's disks are frozen and
shared. An entry is never deployed or changed; check it out to work on it.`,
		Args: exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.Library().Capture(cmd.Context(), wire.CaptureRequest{Config: args[0], Name: args[1], StorageLease: captureLease, Workspace: captureIn, WithState: captureState})
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	capture.Flags().StringVar(&captureLease, "storage-lease", "", "storage lease: "+leaseHelp+" (default: the daemon's)")
	capture.Flags().StringVar(&captureIn, "workspace", "", workspaceCopyHelp)
	capture.Flags().BoolVar(&captureState, "with-state", false, "keep the guests' memory state in the entry (a deployed configuration is paused briefly): checkouts resume instead of booting, deployed --fenced only")
	checkout := &cobra.Command{
		Use:   "checkout NAME NEWCONFIG [--storage-lease 30d|never] [--workspace W]",
		Short: "Make a new configuration from a library entry (linked clone)",
		Args:  exactArgs("NAME", "NEWCONFIG"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.Library().Checkout(cmd.Context(), args[0], wire.CheckoutRequest{Name: args[1], StorageLease: checkoutLease, Workspace: checkoutIn})
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	checkout.Flags().StringVar(&checkoutLease, "storage-lease", "", "storage lease of the new configuration: "+leaseHelp)
	checkout.Flags().StringVar(&checkoutIn, "workspace", "", workspaceCopyHelp)
	list := lister[wire.Config]{
		use: "list [--workspace W]", short: "List library entries",
		flag: "workspace", flagHelp: workspaceListHelp,
		fetch: func(ctx context.Context, filter string) ([]wire.Config, error) {
			return a.client.Library().ListIn(ctx, filter)
		},
		header: []any{"NAME", "WORKSPACE", "OWNER", "VMS", "CREATED", "STORAGE LEASE", "DESCRIPTION"},
		row: func(c wire.Config) []any {
			return []any{c.Name, orDash(c.Workspace), orDash(c.Owner), len(c.VMs), when(c.CreatedAt), storageLeaseText(c.Lease), orDash(c.Description)}
		},
	}.command(a.app)
	return a.group("library", "Capture configurations into the library, list, show, check out and delete entries",
		capture,
		list,
		showCommand(a.app, "show NAME", "Show a library entry: its VMs, NICs and disk chains", func(ctx context.Context, name string) (*wire.Config, error) {
			return a.client.Library().Get(ctx, name)
		}, a.printConfig),
		argCommand(a.app, "delete NAME", "Delete a library entry (layers checked-out configurations use stay)", func(ctx context.Context, name string) error {
			return a.client.Library().Delete(ctx, name)
		}),
		checkout,
	)
}
