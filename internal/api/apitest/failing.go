package apitest

import (
	"context"

	"stagehand/internal/api"
	"stagehand/internal/lab"
)

// Failing is a lab whose call Method ("GetConfig", "ListConfigs",
// "Deploy", "Undeploy" or "VMAction") answers Err; every other call is the
// real lab's. The tests of how error kinds map to statuses use it for
// errors a healthy lab cannot be made to return (a 500, a store that is
// unavailable). Calls counts the calls of Method that reached it.
type Failing struct {
	Lab    *Lab
	Method string
	Err    error
	Calls  int
}

// API returns the lab's resources with its configurations and deployments
// wrapped.
func (f *Failing) API() api.Lab {
	a := f.Lab.API()
	a.Configs = failingConfigs{a.Configs, f}
	a.Deployments = failingDeployments{a.Deployments, f}
	return a
}

func (f *Failing) fail(method string) error {
	if method != f.Method {
		return nil
	}
	f.Calls++
	return f.Err
}

type failingConfigs struct {
	api.Configs
	f *Failing
}

func (c failingConfigs) Get(ctx context.Context, name string) (*lab.ConfigView, error) {
	if err := c.f.fail("GetConfig"); err != nil {
		return nil, err
	}
	return c.Configs.Get(ctx, name)
}

func (c failingConfigs) ListIn(ctx context.Context, workspace string) ([]lab.ConfigView, error) {
	if err := c.f.fail("ListConfigs"); err != nil {
		return nil, err
	}
	return c.Configs.ListIn(ctx, workspace)
}

type failingDeployments struct {
	api.Deployments
	f *Failing
}

func (d failingDeployments) Deploy(ctx context.Context, name string, opts lab.DeployOptions) (*lab.ConfigView, error) {
	if err := d.f.fail("Deploy"); err != nil {
		return nil, err
	}
	return d.Deployments.Deploy(ctx, name, opts)
}

func (d failingDeployments) Undeploy(ctx context.Context, name string, saveState bool) (*lab.ConfigView, error) {
	if err := d.f.fail("Undeploy"); err != nil {
		return nil, err
	}
	return d.Deployments.Undeploy(ctx, name, saveState)
}

func (d failingDeployments) VMAction(ctx context.Context, config, vm, action string) (*lab.ConfigView, error) {
	if err := d.f.fail("VMAction"); err != nil {
		return nil, err
	}
	return d.Deployments.VMAction(ctx, config, vm, action)
}
