package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// archiveCmds builds `stagehand archive`: archives, restores and bundles. Its methods share the app's client, flags and output.
type archiveCmds struct{ *app }

func (a archiveCmds) command() *cobra.Command {
	var (
		detach, importServerPath    bool
		withSnapshots               bool
		createLease, restoreLease   string
		importName, importLease     string
		mapNetworks                 []string
		leaseStorage                string
		createIn, restoreIn         string
		importIn                    string
		createCmd, restoreCmd       *cobra.Command
		exportCmd, importCmd, lease *cobra.Command
	)
	createCmd = &cobra.Command{
		Use:   "create CONFIG NAME [--with-snapshots] [--storage-lease 30d|never] [--workspace W] [--detach]",
		Short: "Copy an undeployed configuration into archive storage (compressed, standalone disks)",
		Long: `Copy an undeployed configuration into the archive storage as a job: each disk's
whole chain becomes one compressed standalone qcow2, with the templates'
boot files and a manifest. Shows progress until it ends, or prints the job
id with --detach.

With --with-snapshots the configuration's snapshot tree travels too: per
disk, the chain below the oldest snapshot as one compressed base, each
snapshot's layer and the current disk as compressed deltas on the point
below them, and the memory states of snapshots taken --with-state. The
saved state of each VM undeployed --save-state travels too (even without
snapshots). A restore then has the same snapshots (snapshot list, revert,
delete) and saved VMs whose deploy resumes them, and a bundle exported
from the archive carries them. A restore of memory states keeps the
archived MACs (the resumed guests have them in memory): while the
archived configuration still exists on the same server, the restored one
deploys --fenced only. Without snapshots or saved VMs the archive is the
same either way.`,
		Args: exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			j, err := a.client.Archives().Start(cmd.Context(), wire.ArchiveRequest{Config: args[0], Name: args[1], StorageLease: createLease, Workspace: createIn, WithSnapshots: withSnapshots})
			if err != nil {
				return err
			}
			return a.jobThen(cmd.Context(), j, detach, func() error { return a.show(cmd.Context(), args[1]) })
		}),
	}
	createCmd.Flags().BoolVar(&withSnapshots, "with-snapshots", false, "carry the configuration's snapshot tree (layers and memory states) and its VMs' saved states")
	createCmd.Flags().StringVar(&createLease, "storage-lease", "", "storage lease: "+leaseHelp)
	createCmd.Flags().StringVar(&createIn, "workspace", "", workspaceCopyHelp)
	restoreCmd = &cobra.Command{
		Use:   "restore NAME NEWCONFIG [--storage-lease 30d|never] [--workspace W] [--detach]",
		Short: "Make a new configuration from an archive (full clone back, with its snapshots)",
		Args:  exactArgs("NAME", "NEWCONFIG"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			j, err := a.client.Archives().StartRestore(cmd.Context(), args[0], wire.RestoreRequest{Name: args[1], StorageLease: restoreLease, Workspace: restoreIn})
			if err != nil {
				return err
			}
			return a.jobThen(cmd.Context(), j, detach, func() error {
				c, err := a.client.Configs().Get(cmd.Context(), args[1])
				if err != nil {
					return err
				}
				return a.printConfig(c)
			})
		}),
	}
	restoreCmd.Flags().StringVar(&restoreLease, "storage-lease", "", "storage lease of the new configuration: "+leaseHelp)
	restoreCmd.Flags().StringVar(&restoreIn, "workspace", "", workspaceCopyHelp)
	exportCmd = &cobra.Command{
		Use:   "export NAME FILE",
		Short: "Download an archive as one bundle file (tar: manifest, checksums, disks)",
		Long: `Download an archive as one bundle: a tar of its manifest (VMs, NICs, networks,
template hardware, a sha256 per file) and its compressed disks. The daemon
streams it; FILE is on this machine and must not exist. It is written to a
private temporary file beside FILE (0600) and appears under its name only
once the whole bundle arrived with the checksum the daemon sent; on any
failure nothing is left. The daemon writes no file for an export.`,
		Args: exactArgs("NAME", "FILE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file, err := absPath(args[1])
			if err != nil {
				return err
			}
			n, err := a.downloadBundle(cmd.Context(), args[0], file)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]any{"archive": args[0], "file": file, "bytes": n})
			}
			_, err = fmt.Fprintln(a.stdout, printable(file))
			return err
		}),
	}
	importCmd = &cobra.Command{
		Use:   "import FILE [--name NEW] [--map-network OLD=NEW]... [--workspace W] [--detach]",
		Short: "Import a bundle as a new archive, checking every checksum first",
		Long: `Import a bundle written by archive export, on this or another server. FILE is
on this machine: it is uploaded with its sha256, which the daemon checks.
The manifest and its checksum are checked, and every network it names must
exist here (or be mapped with --map-network OLD=NEW), before anything is
written; every file is checked against its sha256 before the archive is
created. A damaged, truncated or edited bundle is refused and leaves nothing
behind.

With --server-path FILE is not uploaded: it is a path on the daemon's host,
which only the system administrator on the unix socket may name, under a
directory given with serve --import-dir.`,
		Args: exactArgs("FILE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file, err := absPath(args[0])
			if err != nil {
				return err
			}
			var mapping map[string]string
			for _, m := range mapNetworks {
				old, nw, ok := strings.Cut(m, "=")
				if !ok || old == "" || nw == "" {
					return usagef("--map-network %q is not OLD=NEW", m)
				}
				if mapping == nil {
					mapping = map[string]string{}
				}
				mapping[old] = nw
			}
			var j *wire.Job
			if importServerPath {
				j, err = a.client.Archives().StartImport(cmd.Context(), wire.ImportRequest{File: file, Name: importName, StorageLease: importLease, MapNetwork: mapping, Workspace: importIn})
			} else {
				j, err = a.uploadBundle(cmd.Context(), client.BundleUpload{File: file, Name: importName, StorageLease: importLease, MapNetwork: mapping, Workspace: importIn})
			}
			if err != nil {
				return err
			}
			return a.jobThen(cmd.Context(), j, detach, func() error { return a.show(cmd.Context(), j.Subject) })
		}),
	}
	importCmd.Flags().BoolVar(&importServerPath, "server-path", false, "FILE is on the daemon's host, under its --import-dir (system administrator on the unix socket only)")
	importCmd.Flags().StringVar(&importName, "name", "", "name of the new archive (default: the bundle's)")
	importCmd.Flags().StringArrayVar(&mapNetworks, "map-network", nil, "use network NEW here for the bundle's network OLD (repeatable)")
	importCmd.Flags().StringVar(&importLease, "storage-lease", "", "storage lease: "+leaseHelp)
	importCmd.Flags().StringVar(&importIn, "workspace", "", workspaceNewHelp)
	lease = &cobra.Command{
		Use:   "lease NAME --storage 60d|never",
		Short: "Set an archive's storage lease (from now)",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if leaseStorage == "" {
				return usagef("--storage is required")
			}
			ar, err := a.client.Archives().SetLease(cmd.Context(), args[0], wire.LeaseRequest{Storage: leaseStorage})
			if err != nil {
				return err
			}
			return a.printArchive(ar)
		}),
	}
	lease.Flags().StringVar(&leaseStorage, "storage", "", "storage lease: "+leaseHelp)
	for _, c := range []*cobra.Command{createCmd, restoreCmd, importCmd} {
		c.Flags().BoolVar(&detach, "detach", false, "print the job id and return at once")
	}
	list := lister[wire.Archive]{
		use: "list [--workspace W]", short: "List archives",
		flag: "workspace", flagHelp: workspaceListHelp,
		fetch: func(ctx context.Context, filter string) ([]wire.Archive, error) {
			return a.client.Archives().ListIn(ctx, filter)
		},
		header: []any{"NAME", "WORKSPACE", "OWNER", "SOURCE", "VMS", "SNAPSHOTS", "SIZE", "CREATED", "STORAGE LEASE"},
		row: func(ar wire.Archive) []any {
			return []any{ar.Name, orDash(ar.Workspace), orDash(ar.Owner), ar.Source, len(ar.VMs), len(ar.Snapshots), size(ar.Size), when(ar.CreatedAt), storageLeaseText(ar.Lease)}
		},
	}.command(a.app)
	return a.group("archive", "Archive configurations; list, show, restore, export, import and delete archives",
		createCmd,
		list,
		&cobra.Command{
			Use:   "show NAME",
			Short: "Show an archive: its VMs, NICs, disks and snapshots",
			Args:  exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				return a.show(cmd.Context(), args[0])
			}),
		},
		argCommand(a.app, "delete NAME", "Delete an archive and its files", func(ctx context.Context, name string) error {
			return a.client.Archives().Delete(ctx, name)
		}),
		restoreCmd, exportCmd, importCmd, lease,
	)
}

func (a archiveCmds) show(ctx context.Context, name string) error {
	ar, err := a.client.Archives().Get(ctx, name)
	if err != nil {
		return err
	}
	return a.printArchive(ar)
}

func (a archiveCmds) printArchive(ar *wire.Archive) error {
	return a.print(ar, func(w io.Writer) {
		row(w, "Name:", ar.Name)
		row(w, "Workspace:", orDash(ar.Workspace))
		row(w, "Owner:", orDash(ar.Owner))
		row(w, "Source:", ar.Source)
		row(w, "Directory:", ar.Dir)
		row(w, "Size:", size(ar.Size))
		row(w, "Created:", when(ar.CreatedAt))
		row(w, "Snapshots:", len(ar.Snapshots))
		row(w, "Saved state:", savedVMs(ar))
		row(w, "Storage lease:", storageLeaseText(ar.Lease))
		row(w)
		row(w, "VM", "TEMPLATE", "CPUS", "MEMORY")
		for _, vm := range ar.VMs {
			row(w, vm.Name, vm.Template, vm.CPUs, fmt.Sprintf("%d MiB", vm.MemoryMiB))
		}
		row(w)
		row(w, "VM", "NIC", "NETWORK", "MODE", "IP")
		for _, vm := range ar.VMs {
			for _, n := range vm.NICs {
				row(w, vm.Name, n.Index, n.Network, n.IPMode, orDash(n.IP))
			}
		}
		row(w)
		row(w, "VM", "DISK", "VIRTUAL", "SIZE", "SHA256")
		for _, vm := range ar.VMs {
			for _, d := range vm.Disks {
				row(w, vm.Name, d.Index, size(d.VirtualSize), size(d.Size), d.SHA256)
			}
		}
		if len(ar.Snapshots) == 0 {
			return
		}
		row(w)
		row(w, "SNAPSHOT", "CREATED", "STATE", "SIZE")
		for _, sn := range archiveTree(ar.Snapshots) {
			name := sn.Name
			if sn.depth > 0 {
				name = strings.Repeat("  ", sn.depth-1) + "└─" + sn.Name
			}
			row(w, name, when(sn.CreatedAt), yesNo(sn.WithState), size(sn.Size))
		}
	})
}

// savedVMs names the VMs whose saved state an archive carries (their
// restore resumes them), or "-".
func savedVMs(ar *wire.Archive) string {
	var names []string
	for _, vm := range ar.VMs {
		if vm.SavedState {
			names = append(names, fmt.Sprintf("%s (%s)", vm.Name, size(vm.SavedStateSize)))
		}
	}
	return orDash(strings.Join(names, ", "))
}

// treeSnapshot is a snapshot of an archive with its depth in the tree.
type treeSnapshot struct {
	wire.ArchiveSnapshot
	depth int
}

// archiveTree orders an archive's snapshots depth first, children in the
// order taken, with their depths: the tree snapshot list draws.
func archiveTree(snaps []wire.ArchiveSnapshot) []treeSnapshot {
	kids := map[string][]wire.ArchiveSnapshot{}
	for _, sn := range snaps {
		kids[sn.Parent] = append(kids[sn.Parent], sn)
	}
	var out []treeSnapshot
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		for _, sn := range kids[parent] {
			out = append(out, treeSnapshot{sn, depth})
			walk(sn.Name, depth+1)
		}
	}
	walk("", 0)
	return out
}
