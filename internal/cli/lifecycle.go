package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// The library, archives, leases, cleanup and the event log.

const leaseHelp = `"never", days (30d), weeks (2w) or a duration (8h, 90m)`

func (a *app) libraryCommand() *cobra.Command {
	var captureLease, checkoutLease string
	capture := &cobra.Command{
		Use:   "capture CONFIG NAME [--storage-lease 30d|never]",
		Short: "Copy an undeployed configuration into the library (read-only, by linked clone)",
		Long: `Copy an undeployed configuration into the library as a read-only entry. Like a
linked clone it copies no data: the configuration's disks are frozen and
shared. An entry is never deployed or changed; check it out to work on it.`,
		Args: exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.Capture(cmd.Context(), wire.CaptureRequest{Config: args[0], Name: args[1], StorageLease: captureLease})
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	capture.Flags().StringVar(&captureLease, "storage-lease", "", "storage lease: "+leaseHelp+" (default: the daemon's)")
	checkout := &cobra.Command{
		Use:   "checkout NAME NEWCONFIG [--storage-lease 30d|never]",
		Short: "Make a new configuration from a library entry (linked clone)",
		Args:  exactArgs("NAME", "NEWCONFIG"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.Checkout(cmd.Context(), args[0], wire.CheckoutRequest{Name: args[1], StorageLease: checkoutLease})
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	checkout.Flags().StringVar(&checkoutLease, "storage-lease", "", "storage lease of the new configuration: "+leaseHelp)
	return a.group("library", "Capture configurations into the library, list, show, check out and delete entries",
		capture,
		&cobra.Command{
			Use:   "list",
			Short: "List library entries",
			Args:  exactArgs(),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				cs, err := a.client.ListLibrary(cmd.Context())
				if err != nil {
					return err
				}
				return a.print(cs, func(w io.Writer) {
					row(w, "NAME", "VMS", "OWNER", "CREATED", "STORAGE LEASE", "DESCRIPTION")
					for _, c := range cs {
						row(w, c.Name, len(c.VMs), orDash(c.Owner), when(c.CreatedAt), storageLeaseText(c.Lease), orDash(c.Description))
					}
				})
			}),
		},
		&cobra.Command{
			Use:   "show NAME",
			Short: "Show a library entry: its VMs, NICs and disk chains",
			Args:  exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				c, err := a.client.GetLibraryEntry(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.printConfig(c)
			}),
		},
		&cobra.Command{
			Use:   "delete NAME",
			Short: "Delete a library entry (layers checked-out configurations use stay)",
			Args:  exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				return a.client.DeleteLibraryEntry(cmd.Context(), args[0])
			}),
		},
		checkout,
	)
}

func (a *app) archiveCommand() *cobra.Command {
	var (
		detach                      bool
		createLease, restoreLease   string
		importName, importLease     string
		mapNetworks                 []string
		leaseStorage                string
		createCmd, restoreCmd       *cobra.Command
		exportCmd, importCmd, lease *cobra.Command
	)
	waitThen := func(ctx context.Context, j *wire.Job, then func() error) error {
		if detach {
			return a.printStartedJob(j)
		}
		if _, err := a.waitForJob(ctx, j); err != nil {
			return err
		}
		return then()
	}
	createCmd = &cobra.Command{
		Use:   "create CONFIG NAME [--storage-lease 30d|never] [--detach]",
		Short: "Copy an undeployed configuration into archive storage (compressed, standalone disks)",
		Long: `Copy an undeployed configuration into the archive storage as a job: each disk's
whole chain becomes one compressed standalone qcow2, with the templates'
boot files and a manifest. Shows progress until it ends, or prints the job
id with --detach.`,
		Args: exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			j, err := a.client.StartArchive(cmd.Context(), wire.ArchiveRequest{Config: args[0], Name: args[1], StorageLease: createLease})
			if err != nil {
				return err
			}
			return waitThen(cmd.Context(), j, func() error { return a.showArchive(cmd.Context(), args[1]) })
		}),
	}
	createCmd.Flags().StringVar(&createLease, "storage-lease", "", "storage lease: "+leaseHelp)
	restoreCmd = &cobra.Command{
		Use:   "restore NAME NEWCONFIG [--storage-lease 30d|never] [--detach]",
		Short: "Make a new configuration from an archive (full clone back)",
		Args:  exactArgs("NAME", "NEWCONFIG"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			j, err := a.client.StartRestore(cmd.Context(), args[0], wire.RestoreRequest{Name: args[1], StorageLease: restoreLease})
			if err != nil {
				return err
			}
			return waitThen(cmd.Context(), j, func() error {
				c, err := a.client.GetConfig(cmd.Context(), args[1])
				if err != nil {
					return err
				}
				return a.printConfig(c)
			})
		}),
	}
	restoreCmd.Flags().StringVar(&restoreLease, "storage-lease", "", "storage lease of the new configuration: "+leaseHelp)
	exportCmd = &cobra.Command{
		Use:   "export NAME FILE [--detach]",
		Short: "Write an archive as one bundle file (tar: manifest, checksums, disks)",
		Long: `Write an archive as one bundle: a tar of its manifest (VMs, NICs, networks,
template hardware, a sha256 per file) and its compressed disks. The daemon
writes FILE, so it is a path on the daemon's host (made absolute here).`,
		Args: exactArgs("NAME", "FILE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file, err := absPath(args[1])
			if err != nil {
				return err
			}
			j, err := a.client.StartExport(cmd.Context(), args[0], wire.ExportRequest{File: file})
			if err != nil {
				return err
			}
			return waitThen(cmd.Context(), j, func() error {
				if a.output == "json" {
					return writeJSON(a.stdout, map[string]string{"archive": args[0], "file": file})
				}
				_, err := fmt.Fprintln(a.stdout, printable(file))
				return err
			})
		}),
	}
	importCmd = &cobra.Command{
		Use:   "import FILE [--name NEW] [--map-network OLD=NEW]... [--detach]",
		Short: "Import a bundle as a new archive, checking every checksum first",
		Long: `Import a bundle written by archive export, on this or another server. The
manifest and its checksum are checked, and every network it names must exist
here (or be mapped with --map-network OLD=NEW), before anything is written;
every file is checked against its sha256 before the archive is created. A
damaged, truncated or edited bundle is refused and leaves nothing behind.`,
		Args: exactArgs("FILE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file, err := absPath(args[0])
			if err != nil {
				return err
			}
			req := wire.ImportRequest{File: file, Name: importName, StorageLease: importLease}
			for _, m := range mapNetworks {
				old, nw, ok := strings.Cut(m, "=")
				if !ok || old == "" || nw == "" {
					return usagef("--map-network %q is not OLD=NEW", m)
				}
				if req.MapNetwork == nil {
					req.MapNetwork = map[string]string{}
				}
				req.MapNetwork[old] = nw
			}
			j, err := a.client.StartImport(cmd.Context(), req)
			if err != nil {
				return err
			}
			return waitThen(cmd.Context(), j, func() error { return a.showArchive(cmd.Context(), j.Subject) })
		}),
	}
	importCmd.Flags().StringVar(&importName, "name", "", "name of the new archive (default: the bundle's)")
	importCmd.Flags().StringArrayVar(&mapNetworks, "map-network", nil, "use network NEW here for the bundle's network OLD (repeatable)")
	importCmd.Flags().StringVar(&importLease, "storage-lease", "", "storage lease: "+leaseHelp)
	lease = &cobra.Command{
		Use:   "lease NAME --storage 60d|never",
		Short: "Set an archive's storage lease (from now)",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if leaseStorage == "" {
				return usagef("--storage is required")
			}
			ar, err := a.client.SetArchiveLease(cmd.Context(), args[0], wire.LeaseRequest{Storage: leaseStorage})
			if err != nil {
				return err
			}
			return a.printArchive(ar)
		}),
	}
	lease.Flags().StringVar(&leaseStorage, "storage", "", "storage lease: "+leaseHelp)
	for _, c := range []*cobra.Command{createCmd, restoreCmd, exportCmd, importCmd} {
		c.Flags().BoolVar(&detach, "detach", false, "print the job id and return at once")
	}
	return a.group("archive", "Archive configurations; list, show, restore, export, import and delete archives",
		createCmd,
		&cobra.Command{
			Use:   "list",
			Short: "List archives",
			Args:  exactArgs(),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				as, err := a.client.ListArchives(cmd.Context())
				if err != nil {
					return err
				}
				return a.print(as, func(w io.Writer) {
					row(w, "NAME", "SOURCE", "VMS", "SIZE", "CREATED", "STORAGE LEASE")
					for _, ar := range as {
						row(w, ar.Name, ar.Source, len(ar.VMs), size(ar.Size), when(ar.CreatedAt), storageLeaseText(ar.Lease))
					}
				})
			}),
		},
		&cobra.Command{
			Use:   "show NAME",
			Short: "Show an archive: its VMs, NICs and disks",
			Args:  exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				return a.showArchive(cmd.Context(), args[0])
			}),
		},
		&cobra.Command{
			Use:   "delete NAME",
			Short: "Delete an archive and its files",
			Args:  exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				return a.client.DeleteArchive(cmd.Context(), args[0])
			}),
		},
		restoreCmd, exportCmd, importCmd, lease,
	)
}

func (a *app) showArchive(ctx context.Context, name string) error {
	ar, err := a.client.GetArchive(ctx, name)
	if err != nil {
		return err
	}
	return a.printArchive(ar)
}

func (a *app) printArchive(ar *wire.Archive) error {
	return a.print(ar, func(w io.Writer) {
		row(w, "Name:", ar.Name)
		row(w, "Source:", ar.Source)
		row(w, "Directory:", ar.Dir)
		row(w, "Size:", size(ar.Size))
		row(w, "Created:", when(ar.CreatedAt))
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
	})
}

func (a *app) configLeaseCommand() *cobra.Command {
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
			c, err := a.client.SetLease(cmd.Context(), args[0], req)
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

func (a *app) cleanupCommand() *cobra.Command {
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
				rep, err = a.client.ApplyCleanup(cmd.Context(), wire.CleanupRequest{IdleDays: idleDays, DryRun: dryRun})
			} else {
				rep, err = a.client.Cleanup(cmd.Context(), idleDays)
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

func (a *app) eventsCommand() *cobra.Command {
	var (
		follow bool
		after  int64
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "events [--follow] [--after ID] [--limit N]",
		Short: "Show the event log: who changed what, when, with what result",
		Long: `Show the event log of state changes (create, clone, deploy, capture, archive,
lease expiry, ...): when, who, what and the result. --follow goes on printing
events as they happen (one line each; with -o json, one JSON object per
line) until interrupted.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if !follow {
				es, err := a.events(cmd.Context(), after, limit)
				if err != nil {
					return err
				}
				return a.print(es, func(w io.Writer) {
					row(w, "ID", "TIME", "ACTOR", "ACTION", "OBJECT", "SUBJECT", "RESULT", "DETAIL")
					for _, e := range es {
						eventRow(w, e)
					}
				})
			}
			err := a.client.FollowEvents(cmd.Context(), after, func(e wire.Event) error {
				if a.output == "json" {
					return writeJSONLine(a.stdout, e)
				}
				var b strings.Builder
				eventRow(&b, e)
				_, err := io.WriteString(a.stdout, strings.ReplaceAll(b.String(), "\t", "  "))
				return err
			})
			if cmd.Context().Err() != nil {
				return nil // interrupted: the normal end of a follow
			}
			return err
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&follow, "follow", false, "go on printing new events")
	f.Int64Var(&after, "after", 0, "only events after this id")
	f.IntVar(&limit, "limit", 0, "at most this many events (without --follow)")
	return cmd
}

// events reads up to limit events after event id after (limit 0: all of
// them), a page at a time: the daemon answers at most one page per request.
func (a *app) events(ctx context.Context, after int64, limit int) ([]wire.Event, error) {
	var all []wire.Event
	for limit == 0 || len(all) < limit {
		want := 0 // the daemon's page size
		if limit > 0 {
			want = limit - len(all)
		}
		page, err := a.client.Events(ctx, after, want)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	return all, nil
}

func eventRow(w io.Writer, e wire.Event) {
	row(w, e.ID, when(e.At), e.Actor, e.Action, e.Object, e.Subject, e.Result, orDash(oneLine(e.Detail)))
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
	row(w, "Deploy lease:", deploy+" (then "+onExpiry+")")
}

// writeJSONLine writes v as one line of JSON (a stream of objects).
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
