package apitest

import (
	"context"

	"stagehand/internal/api"
	"stagehand/internal/lab"
)

// Failing is a lab whose method Method answers Err; every other method is
// the real lab's. The tests of how error kinds map to statuses use it for
// errors a healthy lab cannot be made to return (a 500, a store that is
// unavailable). Calls counts the calls of Method that reached it.
type Failing struct {
	api.Lab
	Method string
	Err    error
	Calls  int
}

func (f *Failing) fail(method string) error {
	if method != f.Method {
		return nil
	}
	f.Calls++
	return f.Err
}

func (f *Failing) GetConfig(ctx context.Context, name string) (*lab.ConfigView, error) {
	if err := f.fail("GetConfig"); err != nil {
		return nil, err
	}
	return f.Lab.GetConfig(ctx, name)
}

func (f *Failing) ListConfigs(ctx context.Context) ([]lab.ConfigView, error) {
	if err := f.fail("ListConfigs"); err != nil {
		return nil, err
	}
	return f.Lab.ListConfigs(ctx)
}

func (f *Failing) Deploy(ctx context.Context, name string, opts lab.DeployOptions) (*lab.ConfigView, error) {
	if err := f.fail("Deploy"); err != nil {
		return nil, err
	}
	return f.Lab.Deploy(ctx, name, opts)
}

func (f *Failing) Undeploy(ctx context.Context, name string, saveState bool) (*lab.ConfigView, error) {
	if err := f.fail("Undeploy"); err != nil {
		return nil, err
	}
	return f.Lab.Undeploy(ctx, name, saveState)
}

func (f *Failing) VMAction(ctx context.Context, config, vm, action string) (*lab.ConfigView, error) {
	if err := f.fail("VMAction"); err != nil {
		return nil, err
	}
	return f.Lab.VMAction(ctx, config, vm, action)
}
