package lab

import (
	"context"

	"stagehand/internal/errdefs"
)

// Deploy starts one QEMU process per VM of an undeployed configuration.
func (s *Service) Deploy(ctx context.Context, name string, opts DeployOptions) (*ConfigView, error) {
	return nil, errdefs.Unavailable("deploy: not implemented yet")
}

// Undeploy powers the VMs off, or with saveState suspends them to state
// files that the next Deploy resumes.
func (s *Service) Undeploy(ctx context.Context, name string, saveState bool) (*ConfigView, error) {
	return nil, errdefs.Unavailable("undeploy: not implemented yet")
}

// VMAction stops, starts or resets one VM of a deployed configuration.
func (s *Service) VMAction(ctx context.Context, config, vm, action string) (*ConfigView, error) {
	return nil, errdefs.Unavailable("vm action: not implemented yet")
}

// VMConsole returns the unix socket of a running VM's serial console.
func (s *Service) VMConsole(ctx context.Context, config, vm string) (string, error) {
	return "", errdefs.Unavailable("vm console: not implemented yet")
}

// VMLog returns the path of a VM's serial console log.
func (s *Service) VMLog(ctx context.Context, config, vm string) (string, error) {
	return "", errdefs.Unavailable("vm log: not implemented yet")
}
