package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
	"stagehand/internal/lab"
)

// runtimeOptions are the serve flags of the VM runtime.
type runtimeOptions struct {
	accel       string
	probeKernel string
	probeInitrd string
	noVMs       bool
}

func (o *runtimeOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.accel, "accel", "auto", "accelerator: auto (KVM only if a probe guest really boots under it), kvm or tcg")
	f.StringVar(&o.probeKernel, "probe-kernel", "", "kernel for the KVM probe (default: the newest /boot/vmlinuz-*)")
	f.StringVar(&o.probeInitrd, "probe-initrd", "", "initrd for the KVM probe (default: the matching /boot/initrd.img-*)")
	f.BoolVar(&o.noVMs, "no-vms", false, "manage disks and addresses only: no deploy (for hosts without QEMU or root)")
}

// runtime builds the hypervisor, the network plumbing in the daemon's own
// network namespace, and the accelerator choice. The returned close stops
// the DHCP servers.
func (o *runtimeOptions) apply(ctx context.Context, opts *lab.Options, log *slog.Logger) (func(), error) {
	if o.noVMs {
		log.Info("VM runtime disabled (--no-vms)")
		return func() {}, nil
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open the daemon's network namespace: %w", err)
	}
	host := fence.NewHost(ns, log)
	opts.Hypervisor = hypervisor.Host{}
	opts.Plumbing = host
	opts.Accel, opts.AccelReason = o.chooseAccel(ctx)
	log.Info("accelerator", "accel", opts.Accel, "reason", opts.AccelReason)
	return func() { host.Close(); ns.Close() }, nil
}

func (o *runtimeOptions) chooseAccel(ctx context.Context) (string, string) {
	switch o.accel {
	case "kvm":
		return hypervisor.AccelKVM, "chosen with --accel kvm"
	case "tcg":
		return hypervisor.AccelTCG, "chosen with --accel tcg"
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return hypervisor.AccelTCG, "/dev/kvm absent"
	}
	kernel, initrd := o.probeKernel, o.probeInitrd
	if kernel == "" {
		kernel, initrd = newestBootKernel()
	}
	if kernel == "" {
		return hypervisor.AccelTCG, "/dev/kvm exists but no kernel to probe it with (--probe-kernel)"
	}
	return hypervisor.ProbeAccel(ctx, kernel, initrd, 30*time.Second)
}

// newestBootKernel finds the newest /boot/vmlinuz-VERSION and its
// /boot/initrd.img-VERSION.
func newestBootKernel() (kernel, initrd string) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		return "", ""
	}
	sort.Strings(ks)
	kernel = ks[len(ks)-1]
	candidate := "/boot/initrd.img-" + strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	if _, err := os.Stat(candidate); err == nil {
		initrd = candidate
	}
	return kernel, initrd
}
