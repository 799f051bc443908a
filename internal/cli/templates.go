package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// templateCmds builds `stagehand template`. Its methods share the app's client, flags and output.
type templateCmds struct{ *app }

func (a templateCmds) command() *cobra.Command {
	list := lister[wire.Template]{
		use: "list [--workspace W]", short: "List templates",
		flag: "workspace", flagHelp: workspaceListHelp,
		fetch: func(ctx context.Context, filter string) ([]wire.Template, error) {
			return a.client.Templates().ListIn(ctx, filter)
		},
		header: []any{"NAME", "WORKSPACE", "OWNER", "CPUS", "MEMORY", "DISKS", "VIRTUAL SIZE", "BOOT", "DESCRIPTION"},
		row: func(t wire.Template) []any {
			var virtual int64
			for _, d := range t.Disks {
				virtual += d.VirtualSize
			}
			return []any{t.Name, orDash(t.Workspace), orDash(t.Owner), t.CPUs, fmt.Sprintf("%d MiB", t.MemoryMiB), len(t.Disks), size(virtual), bootMethod(t), orDash(t.Description)}
		},
	}.command(a.app)
	return a.group("template", "Import, list, show and delete VM templates",
		a.importTemplate(),
		list,
		showCommand(a.app, "show NAME", "Show a template and its base disks", func(ctx context.Context, name string) (*wire.Template, error) {
			return a.client.Templates().Get(ctx, name)
		}, a.printTemplate),
		argCommand(a.app, "delete NAME", "Delete a template no configuration was made from", func(ctx context.Context, name string) error {
			return a.client.Templates().Delete(ctx, name)
		}),
	)
}

func (a templateCmds) importTemplate() *cobra.Command {
	var (
		req        client.TemplateUpload
		serverPath bool
	)
	cmd := &cobra.Command{
		Use:   "import NAME --disk FILE [--disk FILE]... [--kernel FILE [--initrd FILE]] [--user-data FILE | --no-seed]",
		Short: "Import disk images as a new template",
		Long: `Import disk images (raw or qcow2) as a new read-only template. The files are
on this machine: each is read once to take its sha256, then uploaded to the
daemon with it, which refuses a file that arrives different (or larger than
its limit, serve --max-upload). Each must be a regular file. The format is
read from the file's bytes: a file that is not what its name or --format
says is refused, saying what it is; --format raw takes a file with no known
image format as raw. A raw image must be a whole number of 512-byte sectors.

With --server-path the files are not uploaded: they are paths on the daemon's
host, which only the system administrator on the unix socket may name, under
a directory given with serve --import-dir (no copy crosses the socket).

Each VM made from it gets a cloud-init NoCloud seed (a small read-only disk
after its own: instance-id, hostname, addresses, and the --user-data file);
--no-seed leaves it out.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			// The daemon judges the template (disks, format, sizes, a
			// kernel for an initrd): one rule, one message.
			req.Name = args[0]
			for i, d := range req.Disks {
				abs, err := absPath(d)
				if err != nil {
					return err
				}
				req.Disks[i] = abs
			}
			for _, p := range []*string{&req.Kernel, &req.Initrd, &req.UserData} {
				if *p != "" {
					abs, err := absPath(*p)
					if err != nil {
						return err
					}
					*p = abs
				}
			}
			var t *wire.Template
			var err error
			// The user-data is small and always sent, never a path on
			// the daemon's host: inline with --server-path, else uploaded.
			var userData []byte
			if req.UserData != "" && serverPath {
				if userData, err = readUserData(req.UserData); err != nil {
					return err
				}
			}
			if serverPath {
				t, err = a.client.Templates().Import(cmd.Context(), wire.TemplateRequest{
					Name: req.Name, Description: req.Description, Disks: req.Disks, Format: req.Format,
					CPUs: req.CPUs, MemoryMiB: req.MemoryMiB, Kernel: req.Kernel, Initrd: req.Initrd, Cmdline: req.Cmdline,
					Workspace: req.Workspace, UserData: userData, NoSeed: req.NoSeed,
				})
			} else {
				t, err = a.uploadTemplate(cmd.Context(), req)
			}
			if err != nil {
				return err
			}
			return a.printTemplate(t)
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&req.Disks, "disk", nil, "disk image, in disk order (repeat for more disks)")
	f.StringVar(&req.Format, "format", "", "image format: raw or qcow2 (default: detected from the file's bytes; a name ending in .qcow2 must be qcow2)")
	f.IntVar(&req.CPUs, "cpus", 0, "virtual CPUs (default 1)")
	f.IntVar(&req.MemoryMiB, "memory", 0, "memory in MiB (default 256)")
	f.StringVar(&req.Kernel, "kernel", "", "kernel for direct kernel boot")
	f.StringVar(&req.Initrd, "initrd", "", "initrd for direct kernel boot")
	f.StringVar(&req.Cmdline, "cmdline", "", "kernel command line for direct kernel boot")
	f.StringVar(&req.Description, "description", "", "description")
	f.StringVar(&req.UserData, "user-data", "", "cloud-init user-data for its VMs' seeds (#cloud-config or a #! script, at most 64 KiB)")
	f.BoolVar(&req.NoSeed, "no-seed", false, "give its VMs no cloud-init seed (no instance-id, hostname or user-data disk)")
	f.StringVar(&req.Workspace, "workspace", "", workspaceNewHelp)
	f.BoolVar(&serverPath, "server-path", false, "the files are on the daemon's host, under its --import-dir (system administrator on the unix socket only)")
	return cmd
}

func absPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("path %q: %v", p, err)
	}
	return abs, nil
}

func bootMethod(t wire.Template) string {
	if t.Kernel != "" {
		return "kernel"
	}
	return "disk"
}

func (a templateCmds) printTemplate(t *wire.Template) error {
	return a.print(t, func(w io.Writer) {
		row(w, "Name:", t.Name)
		row(w, "Workspace:", orDash(t.Workspace))
		row(w, "Owner:", orDash(t.Owner))
		row(w, "Description:", orDash(t.Description))
		row(w, "CPUs:", t.CPUs)
		row(w, "Memory:", fmt.Sprintf("%d MiB", t.MemoryMiB))
		if t.Kernel != "" {
			row(w, "Boot:", "kernel "+t.Kernel)
			row(w, "Initrd:", orDash(t.Initrd))
			row(w, "Cmdline:", orDash(t.Cmdline))
		} else {
			row(w, "Boot:", "disk")
		}
		row(w, "Seed:", seedText(*t))
		row(w, "Created:", when(t.CreatedAt))
		row(w)
		row(w, "DISK", "PATH", "VIRTUAL", "ALLOCATED")
		for i, d := range t.Disks {
			row(w, i, d.Path, size(d.VirtualSize), size(d.ActualSize))
		}
	})
}
