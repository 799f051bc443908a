package apitest

import (
	"context"

	"stagehand/internal/hypervisor"
	"stagehand/internal/lab"
)

// Status counts the fake's objects; its accelerator is ready with Accel
// and AccelReason.
func (f *Fake) Status(ctx context.Context) (*lab.StatusView, error) {
	if err := f.fail("Status"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := &lab.StatusView{
		DataDir:   "/fake",
		Accel:     hypervisor.AccelStatus{State: hypervisor.AccelReady, Accel: f.Accel, Reason: f.AccelReason},
		Templates: len(f.templates),
		Networks:  len(f.networks),
		Configs:   len(f.configs),
	}
	for _, c := range f.configs {
		if c.State != stateUndeployed {
			v.Deployed++
		}
		for _, vm := range c.VMs {
			if vm.State == lab.VMStateRunning {
				v.RunningVMs++
			}
		}
	}
	return v, nil
}
