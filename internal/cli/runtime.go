package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
	"stagehand/internal/lab"
)

// accelCacheFile is the accelerator probe's cache inside the data dir.
const accelCacheFile = "accel-probe.json"

// runtimeOptions are the serve flags of the VM runtime.
type runtimeOptions struct {
	accel        string
	probeKernel  string
	probeInitrd  string
	probeTimeout time.Duration
	noVMs        bool
	// testProbe is STAGEHAND_TEST_PROBE: "hang" replaces the probe with
	// one that never decides, so tests can show the daemon serving while
	// a probe hangs on any host (whether this host's KVM hangs, fails or
	// works). Logged loudly; never set in production.
	testProbe string
}

func (o *runtimeOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.accel, "accel", "auto", "accelerator: auto (KVM only if a probe guest really boots under it; probed in the background and cached in DATA/"+accelCacheFile+"), kvm or tcg")
	f.StringVar(&o.probeKernel, "probe-kernel", "", "kernel for the KVM probe (default: the newest /boot/vmlinuz-*)")
	f.StringVar(&o.probeInitrd, "probe-initrd", "", "initrd for the KVM probe (default: the matching /boot/initrd.img-*)")
	f.DurationVar(&o.probeTimeout, "probe-timeout", hypervisor.DefaultProbeTimeout, "how long the KVM probe guest may take to boot before TCG is chosen")
	f.BoolVar(&o.noVMs, "no-vms", false, "manage disks and addresses only: no deploy (for hosts without QEMU or root)")
}

// check refuses bad runtime flags before anything is started.
func (o *runtimeOptions) check() error {
	switch o.accel {
	case "auto", hypervisor.AccelKVM, hypervisor.AccelTCG:
	default:
		return usagef("--accel %q is not auto, kvm or tcg", o.accel)
	}
	if o.probeTimeout <= 0 {
		return usagef("--probe-timeout must be positive")
	}
	if o.probeInitrd != "" && o.probeKernel == "" {
		return usagef("--probe-initrd needs --probe-kernel")
	}
	if o.testProbe != "" && o.testProbe != "hang" {
		return usagef("STAGEHAND_TEST_PROBE=%q: the only test probe is \"hang\"", o.testProbe)
	}
	return nil
}

// apply builds the hypervisor, the network plumbing in the daemon's own
// network namespace, and the accelerator, whose probe starts in the
// background: apply does not wait for it. The returned close stops the
// probe and the DHCP servers.
func (o *runtimeOptions) apply(opts *lab.Options, dataDir string, log *slog.Logger) (func(), error) {
	if o.noVMs {
		log.Info("VM runtime disabled (--no-vms)")
		opts.Accel = hypervisor.FixedAccelerator(hypervisor.AccelTCG, "no VMs are run (--no-vms)")
		return func() {}, nil
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open the daemon's network namespace: %w", err)
	}
	host := fence.NewHost(ns, log)
	accel := o.accelerator(dataDir, log)
	opts.Hypervisor = hypervisor.Host{}
	opts.Plumbing = host
	opts.Accel = accel
	return func() { accel.Close(); host.Close(); ns.Close() }, nil
}

// accelerator returns the operator's choice, or starts the probe.
func (o *runtimeOptions) accelerator(dataDir string, log *slog.Logger) *hypervisor.Accelerator {
	switch o.accel {
	case hypervisor.AccelKVM, hypervisor.AccelTCG:
		log.Info("accelerator", "accel", o.accel, "reason", "chosen with --accel")
		return hypervisor.FixedAccelerator(o.accel, "chosen with --accel "+o.accel)
	}
	if o.testProbe == "hang" {
		log.Warn("test probe armed (STAGEHAND_TEST_PROBE=hang): the accelerator probe never decides; TCG after --probe-timeout", "probe_timeout", o.probeTimeout)
		return hypervisor.StartAccelerator(hypervisor.AccelConfig{
			Probe: func(ctx context.Context) (string, string, error) {
				<-ctx.Done()
				return "", "", fmt.Errorf("test probe (STAGEHAND_TEST_PROBE=hang) never answers: %w", ctx.Err())
			},
			Timeout: o.probeTimeout,
			Log:     log,
		})
	}
	kernel, initrd := o.probeKernel, o.probeInitrd
	if kernel == "" {
		kernel, initrd = hypervisor.NewestBootKernel("/boot")
	}
	return hypervisor.StartAccelerator(hypervisor.AccelConfig{
		Probe:     hypervisor.BootProbe(kernel, initrd, o.probeTimeout),
		Timeout:   o.probeTimeout,
		CacheFile: filepath.Join(dataDir, accelCacheFile),
		Key: func(ctx context.Context) (hypervisor.ProbeKey, error) {
			return hypervisor.HostProbeKey(ctx, kernel)
		},
		Log: log,
	})
}
