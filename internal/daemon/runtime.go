package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/vishvananda/netns"

	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
	"stagehand/internal/lab"
)

// startRuntime builds the hypervisor, the network plumbing in the daemon's
// own network namespace, and the accelerator, whose probe starts in the
// background: it does not wait for it. The returned close stops the probe
// and the DHCP servers.
func startRuntime(cfg Config, opts *lab.Options, dataDir string, log *slog.Logger) (func(), error) {
	if cfg.NoVMs {
		log.Info("VM runtime disabled (--no-vms)")
		opts.Accel = hypervisor.FixedAccelerator(hypervisor.AccelTCG, "no VMs are run (--no-vms)")
		return func() {}, nil
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open the daemon's network namespace: %w", err)
	}
	segs, fences := fence.NewSegments(ns, log), fence.NewFences(ns, log)
	accel := accelerator(cfg, dataDir, log)
	opts.Hypervisor, opts.Segments, opts.Fences = lab.QEMU{Log: log}, segs, fences
	opts.Accel = accel
	return func() { accel.Close(); segs.Close(); fences.Close(); ns.Close() }, nil
}

// accelerator returns the operator's choice, or starts the probe.
func accelerator(cfg Config, dataDir string, log *slog.Logger) *hypervisor.Accelerator {
	switch cfg.Accel {
	case hypervisor.AccelKVM, hypervisor.AccelTCG:
		log.Info("accelerator", "accel", cfg.Accel, "reason", "chosen with --accel")
		return hypervisor.FixedAccelerator(cfg.Accel, "chosen with --accel "+cfg.Accel)
	}
	if cfg.TestProbe == "hang" {
		log.Warn("test probe armed (STAGEHAND_TEST_PROBE=hang): the accelerator probe never decides; TCG after --probe-timeout", "probe_timeout", cfg.ProbeTimeout)
		return hypervisor.StartAccelerator(hypervisor.AccelConfig{
			Probe: func(ctx context.Context) (string, string, error) {
				<-ctx.Done()
				return "", "", fmt.Errorf("test probe (STAGEHAND_TEST_PROBE=hang) never answers: %w", ctx.Err())
			},
			Timeout: cfg.ProbeTimeout,
			Log:     log,
		})
	}
	kernel, initrd := cfg.ProbeKernel, cfg.ProbeInitrd
	if kernel == "" {
		kernel, initrd = hypervisor.NewestBootKernel("/boot")
	}
	return hypervisor.StartAccelerator(hypervisor.AccelConfig{
		Probe:     hypervisor.BootProbe(kernel, initrd, cfg.ProbeTimeout, log),
		Timeout:   cfg.ProbeTimeout,
		CacheFile: filepath.Join(dataDir, AccelCacheFile),
		Key: func(ctx context.Context) (hypervisor.ProbeKey, error) {
			return hypervisor.HostProbeKey(ctx, kernel)
		},
		Log: log,
	})
}
