package cli

import (
	"context"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/lab"
)

// leaseFlags are the serve flags of archives, leases and the reaper.
type leaseFlags struct {
	archiveDir     string
	defaultStorage string
	defaultDeploy  string
	policy         string
	grace          string
	reapInterval   time.Duration
}

func (o *leaseFlags) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.archiveDir, "archive-dir", "", "directory of archives, may be another filesystem (default DATA/archive)")
	f.StringVar(&o.defaultStorage, "default-storage-lease", "never", "storage lease of new configurations, library entries and archives: "+leaseHelp)
	f.StringVar(&o.defaultDeploy, "default-deploy-lease", "never", "deployment lease of new configurations: "+leaseHelp)
	f.StringVar(&o.policy, "cleanup-policy", lab.CleanupNotify, "what happens when a storage lease runs out: notify (mark and report) or delete (after the grace period)")
	f.StringVar(&o.grace, "cleanup-grace", "7d", "with --cleanup-policy delete: how long an expired object is kept")
	f.DurationVar(&o.reapInterval, "reap-interval", lab.DefaultReapInterval, "how often leases are enforced")
}

// apply checks the flags and sets them in opts.
func (o *leaseFlags) apply(opts *lab.Options) error {
	var err error
	p := lab.LeasePolicy{Cleanup: o.policy, ReapInterval: o.reapInterval}
	if p.DefaultStorage, err = lab.ParseLease(o.defaultStorage); err != nil {
		return usagef("--default-storage-lease: %v", err)
	}
	if p.DefaultDeploy, err = lab.ParseLease(o.defaultDeploy); err != nil {
		return usagef("--default-deploy-lease: %v", err)
	}
	if p.Grace, err = lab.ParseLease(o.grace); err != nil || p.Grace == 0 {
		return usagef("--cleanup-grace %q is not a positive duration (7d, 12h)", o.grace)
	}
	switch o.policy {
	case lab.CleanupNotify, lab.CleanupDelete:
	default:
		return usagef("--cleanup-policy %q is not notify or delete", o.policy)
	}
	if o.reapInterval <= 0 {
		return usagef("--reap-interval must be positive")
	}
	opts.ArchiveDir, opts.Leases = o.archiveDir, p
	return nil
}

// startReaper runs the lab's reaper, once after is closed (the recovery is
// done), until the returned stop is called; stop waits for a pass in
// progress to end.
func startReaper(svc *lab.Service, after <-chan struct{}) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-after:
		case <-ctx.Done():
			return
		}
		svc.RunReaper(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}
