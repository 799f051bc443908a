package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// serverCmds builds the commands about the daemon as a whole: `status`, `doctor` and `cleanup`. Its methods share the app's client, flags and output.
type serverCmds struct{ *app }

func (a serverCmds) cleanup() *cobra.Command {
	var (
		idleDays      int
		apply, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "cleanup [--idle-days N] [--apply [--dry-run]]",
		Short: "List expired and idle configurations, library entries and archives, with the space each frees",
		Long: `The resource cleanup view: configurations, library entries and archives whose
storage lease ran out, and with --idle-days N those not used (deployed,
undeployed, checked out, restored, exported) for N days, each with the space
deleting it alone would free. Layers are shared: a layer counts only when
everything that keeps it goes too, so deleting several items together can
free more than the sum of each alone (the TOTAL line).

  --apply            delete every listed item that can be deleted (a
                     configuration that is not undeployed never is)
  --apply --dry-run  say what --apply would delete, and free`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if dryRun && !apply {
				return usagef("--dry-run goes with --apply")
			}
			var rep *wire.CleanupReport
			var err error
			if apply {
				rep, err = a.client.Server().ApplyCleanup(cmd.Context(), wire.CleanupRequest{IdleDays: idleDays, DryRun: dryRun})
			} else {
				rep, err = a.client.Server().Cleanup(cmd.Context(), idleDays)
			}
			if err != nil {
				return err
			}
			if perr := a.print(rep, func(w io.Writer) { printCleanup(w, rep, dryRun) }); perr != nil {
				return perr
			}
			for _, it := range rep.Items {
				if it.Error != "" {
					return fmt.Errorf("cleanup: %s %s: %s", it.Object, it.Name, it.Error)
				}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.IntVar(&idleDays, "idle-days", 0, "also list what was not used for N days")
	f.BoolVar(&apply, "apply", false, "delete what can be deleted")
	f.BoolVar(&dryRun, "dry-run", false, "with --apply: only say what would be deleted")
	return cmd
}

func printCleanup(w io.Writer, rep *wire.CleanupReport, dryRun bool) {
	row(w, "OBJECT", "NAME", "STATE", "REASONS", "FREES", "ACTION")
	for _, it := range rep.Items {
		action := "-"
		switch {
		case it.Deleted:
			action = "deleted"
		case it.Error != "":
			action = "failed: " + oneLine(it.Error)
		case !it.Deletable:
			action = "kept: " + it.Kept
		case dryRun:
			action = "would delete"
		}
		row(w, it.Object, it.Name, orDash(it.State), strings.Join(it.Reasons, "; "), size(it.Frees), action)
	}
	total := "TOTAL (all deletable together)"
	switch {
	case rep.Applied:
		row(w, "FREED", "", "", "", size(rep.Freed), "")
	default:
		row(w, total, "", "", "", size(rep.Frees), "")
	}
	grace := ""
	if rep.Policy == "delete" {
		grace = fmt.Sprintf(" after %s", time.Duration(rep.GraceSeconds)*time.Second)
	}
	row(w, "Policy:", rep.Policy+grace)
}
