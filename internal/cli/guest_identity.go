package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// setHostname is `vm set-hostname CONFIG VM NAME`: the name the VM's
// cloud-init seed gives the guest from the next deploy on ("" for the
// default, VM-CONFIG).
func (a vmCmds) setHostname() *cobra.Command {
	return &cobra.Command{
		Use:   "set-hostname CONFIG VM NAME",
		Short: "Set a VM's hostname (RFC 1123; \"\" for the default VM-CONFIG), seen by the guest at the next deploy",
		Long: `Set the hostname a VM's cloud-init seed gives its guest. It must be an
RFC 1123 host name: labels of letters, digits and '-' (not at either end),
at most 63 characters each, joined by dots. "" goes back to the default,
VM-CONFIG. The guest sees it at the configuration's next deploy, which writes
its seed again. A clone does not copy it: a copy is a new machine, with a new
instance-id and the default hostname of its own name.`,
		Args: exactArgs("CONFIG", "VM", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.VMs().SetHostname(cmd.Context(), args[0], args[1], args[2])
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
}

// maxUserData is the daemon's bound on a template's user-data (seed.MaxUserData).
const maxUserData = 64 << 10

// readUserData reads a user-data file on this machine, to send inline.
func readUserData(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("--user-data: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUserData+1))
	if err != nil {
		return nil, fmt.Errorf("--user-data %s: %w", path, err)
	}
	if len(b) > maxUserData {
		return nil, usagef("--user-data %s: more than %d bytes", path, maxUserData)
	}
	return b, nil
}

// seedText says what a template's VMs get as their cloud-init seed.
func seedText(t wire.Template) string {
	switch {
	case !t.Seed:
		return "none (--no-seed)"
	case t.UserDataBytes > 0:
		return fmt.Sprintf("NoCloud, user-data %d bytes", t.UserDataBytes)
	default:
		return "NoCloud, no user-data"
	}
}

// printIdentities is config show's table of what each VM's cloud-init
// seed says.
func printIdentities(w io.Writer, c *wire.Config) {
	row(w)
	row(w, "VM", "HOSTNAME", "INSTANCE-ID")
	for _, vm := range c.VMs {
		row(w, vm.Name, vm.Hostname, orDash(vm.InstanceID))
	}
}
