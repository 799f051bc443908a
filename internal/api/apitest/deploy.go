package apitest

import (
	"context"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

// Configuration states the fake moves through.
const (
	stateUndeployed = "undeployed"
	stateDeployed   = "deployed"
)

func (f *Fake) newPID() int {
	f.nextPID++
	return 4000 + f.nextPID
}

// Deploy marks an undeployed configuration deployed and its VMs running,
// each with a PID; fenced NICs get external addresses.
func (f *Fake) Deploy(ctx context.Context, name string, opts lab.DeployOptions) (*lab.ConfigView, error) {
	if err := f.fail("Deploy"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[name]
	if !ok {
		return nil, errdefs.NotFound("configuration %q not found", name)
	}
	if c.State != stateUndeployed {
		return nil, errdefs.Conflict("configuration %q is %s already", name, c.State)
	}
	policy := ""
	if opts.Fenced {
		switch opts.FencePolicy {
		case "":
			policy = "in-out"
		case "block", "out", "in-out":
			policy = opts.FencePolicy
		default:
			return nil, errdefs.Invalid("fence policy %q is not block, out or in-out", opts.FencePolicy)
		}
	}
	c.State, c.Fenced, c.FencePolicy = stateDeployed, opts.Fenced, policy
	for i := range c.VMs {
		vm := &c.VMs[i]
		vm.State, vm.PID, vm.HasSavedState = lab.VMStateRunning, f.newPID(), false
		for j := range vm.NICs {
			if opts.Fenced && vm.NICs[j].IP != "" {
				vm.NICs[j].ExternalIP = f.poolIP()
			}
		}
	}
	return clone(c), nil
}

// Undeploy marks a deployed configuration undeployed; with saveState its
// VMs are saved, else stopped.
func (f *Fake) Undeploy(ctx context.Context, name string, saveState bool) (*lab.ConfigView, error) {
	if err := f.fail("Undeploy"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[name]
	if !ok {
		return nil, errdefs.NotFound("configuration %q not found", name)
	}
	if c.State != stateDeployed {
		return nil, errdefs.Conflict("configuration %q is %s, not deployed", name, c.State)
	}
	c.State, c.Fenced, c.FencePolicy = stateUndeployed, false, ""
	for i := range c.VMs {
		vm := &c.VMs[i]
		vm.State, vm.PID, vm.HasSavedState = lab.VMStateStopped, 0, false
		if saveState {
			vm.State, vm.HasSavedState = lab.VMStateSaved, true
		}
		for j := range vm.NICs {
			vm.NICs[j].ExternalIP = ""
		}
	}
	return clone(c), nil
}

// VMAction stops, starts or resets one VM of a deployed configuration.
func (f *Fake) VMAction(ctx context.Context, config, vm, action string) (*lab.ConfigView, error) {
	if err := f.fail("VMAction"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.deployedVM(config, vm)
	if err != nil {
		return nil, err
	}
	switch action {
	case lab.VMActionStop:
		v.State, v.PID = lab.VMStateStopped, 0
	case lab.VMActionStart:
		if v.State != lab.VMStateRunning {
			v.State, v.PID = lab.VMStateRunning, f.newPID()
		}
	case lab.VMActionReset:
		if v.State != lab.VMStateRunning {
			return nil, errdefs.Conflict("VM %q of %q is %s; start it instead", vm, config, v.State)
		}
	default:
		return nil, errdefs.Invalid("VM action %q is not stop, start or reset", action)
	}
	return clone(f.configs[config]), nil
}

// VMConsole returns ConsoleSocket for a running VM.
func (f *Fake) VMConsole(ctx context.Context, config, vm string) (string, error) {
	if err := f.fail("VMConsole"); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.deployedVM(config, vm)
	if err != nil {
		return "", err
	}
	if v.State != lab.VMStateRunning {
		return "", errdefs.Conflict("VM %q of %q is %s, not running", vm, config, v.State)
	}
	if f.ConsoleSocket == "" {
		return "", errdefs.Unavailable("VM %q of %q has no console", vm, config)
	}
	return f.ConsoleSocket, nil
}

// VMLog returns SerialLog for any VM of the fake.
func (f *Fake) VMLog(ctx context.Context, config, vm string) (string, error) {
	if err := f.fail("VMLog"); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.vm(config, vm); err != nil {
		return "", err
	}
	if f.SerialLog == "" {
		return "", errdefs.NotFound("VM %q of %q has no serial log", vm, config)
	}
	return f.SerialLog, nil
}

// deployedVM returns a VM of a deployed configuration.
func (f *Fake) deployedVM(config, vm string) (*lab.VMView, error) {
	v, err := f.vm(config, vm)
	if err != nil {
		return nil, err
	}
	if c := f.configs[config]; c.State != stateDeployed {
		return nil, errdefs.Conflict("configuration %q is %s, not deployed", config, c.State)
	}
	return v, nil
}
