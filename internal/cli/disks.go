package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// diskCmds builds `stagehand disk`: a VM disk's chain of layers. Its methods share the app's client, flags and output.
type diskCmds struct{ *app }

func (a diskCmds) command() *cobra.Command {
	var detach bool
	consolidate := &cobra.Command{
		Use:   "consolidate CONFIG VM [DISK] [--detach]",
		Short: "Rewrite a VM disk's chain into one fresh base layer (a job)",
		Args:  rangeArgs([]string{"CONFIG", "VM"}, "DISK"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			disk, err := diskArg(args)
			if err != nil {
				return err
			}
			job, err := a.client.VMs().StartConsolidate(ctx, args[0], args[1], disk)
			if err != nil {
				return err
			}
			return a.jobThen(ctx, job, detach, func() error { return a.printChain(cmd, args[0], args[1], disk) })
		}),
	}
	consolidate.Flags().BoolVar(&detach, "detach", false, "print the job id and return at once")
	return a.group("disk", "Inspect and consolidate VM disk chains",
		&cobra.Command{
			Use:   "chain CONFIG VM [DISK]",
			Short: "List a VM disk's layers, top to base",
			Args:  rangeArgs([]string{"CONFIG", "VM"}, "DISK"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				disk, err := diskArg(args)
				if err != nil {
					return err
				}
				return a.printChain(cmd, args[0], args[1], disk)
			}),
		},
		consolidate,
		a.shortcut(),
	)
}

// diskArg is the optional third argument, disk 0 when absent.
func diskArg(args []string) (int, error) {
	if len(args) < 3 {
		return 0, nil
	}
	return indexArg("DISK", args[2])
}

func (a diskCmds) printChain(cmd *cobra.Command, config, vm string, disk int) error {
	ls, err := a.client.VMs().DiskChain(cmd.Context(), config, vm, disk)
	if err != nil {
		return err
	}
	return a.print(ls, func(w io.Writer) {
		row(w, "DEPTH", "PATH", "FROZEN", "VIRTUAL", "ALLOCATED", "TEMPLATE", "SNAPSHOT", "SHORTCUT OF")
		history := 0
		for i, l := range ls {
			row(w, i, l.Path, yesNo(l.Frozen), size(l.VirtualSize), size(l.ActualSize), orDash(l.Template), orDash(l.Snapshot), shortcutOf(l.Shortcut))
			history += historyDepth(l)
		}
		if history != len(ls) {
			row(w, "")
			row(w, "Reads through:", fmt.Sprintf("%d layers", len(ls)))
			row(w, "Clone history:", fmt.Sprintf("%d layers (what the chain limit counts)", history))
		}
	})
}
