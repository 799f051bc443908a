package cli

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// version is the daemon's version when a build sets it with
// -ldflags "-X stagehand/internal/cli.version=..."; empty means the
// module's version and VCS revision from the build information.
var version string

// Version returns the version of this build.
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (" + rev + modified + ")"
	}
	return v
}

func (a serverCmds) status() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon: version, uptime, accelerator (or that it is being probed), store, data dir, counts, recovery",
		Args:  exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			s, err := a.client.Server().Status(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(s, func(w io.Writer) { printStatus(w, s) })
		}),
	}
}

func printStatus(w io.Writer, s *wire.Status) {
	row(w, "Version:", orDash(s.Version))
	uptime := (time.Duration(s.UptimeSeconds * float64(time.Second))).Round(time.Second)
	row(w, "Uptime:", fmt.Sprintf("%s (since %s)", uptime, when(s.StartedAt)))
	row(w, "Accelerator:", accelLine(s.Accel))
	row(w, "Store:", orDash(strings.TrimSpace(s.Store.Kind+" "+s.Store.Path)))
	row(w, "Data dir:", s.DataDir)
	recovered := "yes"
	switch {
	case !s.Recovered:
		recovered = "no: recovering interrupted operations; writes wait"
	case s.RecoveryError != "":
		recovered = "with errors (run stagehand doctor): " + oneLine(s.RecoveryError)
	}
	row(w, "Recovered:", recovered)
	row(w, "Templates:", s.Counts.Templates)
	row(w, "Networks:", s.Counts.Networks)
	row(w, "Configurations:", fmt.Sprintf("%d (%d deployed)", s.Counts.Configs, s.Counts.Deployed))
	row(w, "Library entries:", s.Counts.LibraryEntries)
	row(w, "Running VMs:", s.Counts.RunningVMs)
}

// accelLine is "kvm (why)", or "probing for 3s (what)".
func accelLine(a wire.Accel) string {
	if a.State == wire.AccelProbing {
		d := time.Duration(a.ProbingSeconds * float64(time.Second)).Round(time.Second)
		return fmt.Sprintf("probing for %s (%s)", d, oneLine(a.Reason))
	}
	return fmt.Sprintf("%s (%s)", a.Accel, oneLine(a.Reason))
}
