package cli

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// shortcut is `stagehand disk shortcut CONFIG [--vm V]`.
func (a diskCmds) shortcut() *cobra.Command {
	var vm string
	cmd := &cobra.Command{
		Use:   "shortcut CONFIG [--vm VM]",
		Short: "Give deep chains a shortcut layer now (what the daemon does in the background)",
		Long: `Run the daemon's shortcut pass for one configuration now. A VM disk whose
chain reads through more layers than the daemon's shortcut depth (serve
--shortcut-depth, default 10) gets one new frozen layer that reads exactly as
the run of frozen layers under its top (checked with qemu-img compare); every
layer built on the run's top moves onto it without touching its data (running
guests are switched live), and the run is released once nothing refers to it.
The chain limit still counts the clone history (disk chain shows both depths).`,
		Args: exactArgs("CONFIG"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			rep, err := a.client.VMs().Shortcut(cmd.Context(), args[0], vm)
			if err != nil {
				return err
			}
			return a.print(rep, func(w io.Writer) {
				if len(rep.Built)+len(rep.Rebased)+len(rep.Switched) == 0 {
					row(w, "Nothing to do: no chain of "+rep.Config+" is deeper than the shortcut depth.")
					return
				}
				for _, b := range rep.Built {
					row(w, "Built:", b.Path, shortcutOf(&b.ShortcutRun))
				}
				for _, p := range rep.Rebased {
					row(w, "Rebased:", p)
				}
				for _, s := range rep.Switched {
					row(w, "Switched live:", s)
				}
				row(w, "Released:", fmt.Sprintf("%d layer file(s)", len(rep.Released)))
			})
		}),
	}
	cmd.Flags().StringVar(&vm, "vm", "", "only this VM's disks")
	return cmd
}

// shortcutOf describes the run a shortcut layer stands for ("-" for other
// layers).
func shortcutOf(r *wire.ShortcutRun) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%d layers: %s..%s", r.Layers, filepath.Base(r.RunBottom), filepath.Base(r.RunTop))
}

// historyDepth is how many layers of clone history l stands for.
func historyDepth(l wire.Layer) int {
	if l.Shortcut != nil && l.Shortcut.Layers > 0 {
		return l.Shortcut.Layers
	}
	return 1
}
