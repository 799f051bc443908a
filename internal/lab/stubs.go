package lab

// Temporary: signatures of the Service API being implemented. Each moves to
// its own file as it is written.

import (
	"context"
	"errors"
	"sort"

	"stagehand/internal/jobs"
)

var errTODO = errors.New("not implemented yet")

func sortedUnique(keys []string) []string {
	sort.Strings(keys)
	out := keys[:0]
	for i, k := range keys {
		if i == 0 || k != keys[i-1] {
			out = append(out, k)
		}
	}
	return out
}

func (s *Service) Recover(ctx context.Context) error { return errTODO }

func (s *Service) ImportTemplate(ctx context.Context, spec TemplateSpec) (*TemplateView, error) {
	return nil, errTODO
}
func (s *Service) ListTemplates(ctx context.Context) ([]TemplateView, error) { return nil, errTODO }
func (s *Service) GetTemplate(ctx context.Context, name string) (*TemplateView, error) {
	return nil, errTODO
}
func (s *Service) DeleteTemplate(ctx context.Context, name string) error { return errTODO }

func (s *Service) CreateNetwork(ctx context.Context, spec NetworkSpec) (*NetworkView, error) {
	return nil, errTODO
}
func (s *Service) ListNetworks(ctx context.Context) ([]NetworkView, error) { return nil, errTODO }
func (s *Service) GetNetwork(ctx context.Context, name string) (*NetworkView, error) {
	return nil, errTODO
}
func (s *Service) DeleteNetwork(ctx context.Context, name string) error { return errTODO }

func (s *Service) CreateConfig(ctx context.Context, spec ConfigSpec) (*ConfigView, error) {
	return nil, errTODO
}
func (s *Service) ListConfigs(ctx context.Context) ([]ConfigView, error) { return nil, errTODO }
func (s *Service) GetConfig(ctx context.Context, name string) (*ConfigView, error) {
	return nil, errTODO
}
func (s *Service) DeleteConfig(ctx context.Context, name string) error { return errTODO }

// LinkedClone makes NEW from SRC by linked clone, synchronously (it only
// creates small files).
func (s *Service) LinkedClone(ctx context.Context, src, dst string) (*ConfigView, error) {
	return nil, errTODO
}

// StartFullClone starts a full clone of SRC into NEW as a job.
func (s *Service) StartFullClone(ctx context.Context, src, dst string) (jobs.Job, error) {
	return jobs.Job{}, errTODO
}

// ChangeIPs gives every pool NIC of a configuration a new pool address and
// clears manual ones.
func (s *Service) ChangeIPs(ctx context.Context, name string) (*ConfigView, error) {
	return nil, errTODO
}

// SetIP sets a manual address (or "pool"/"dhcp") on one NIC.
func (s *Service) SetIP(ctx context.Context, config, vm string, nic int, ip string) (*ConfigView, error) {
	return nil, errTODO
}

// DiskChain lists a VM disk's layers, top first.
func (s *Service) DiskChain(ctx context.Context, config, vm string, disk int) ([]LayerView, error) {
	return nil, errTODO
}

// StartConsolidate rewrites a VM disk's chain into a fresh base, as a job.
func (s *Service) StartConsolidate(ctx context.Context, config, vm string, disk int) (jobs.Job, error) {
	return jobs.Job{}, errTODO
}

// Doctor compares the store with the files and reports problems; with
// repair it fixes what is safe.
func (s *Service) Doctor(ctx context.Context, repair bool) (*DoctorReport, error) {
	return nil, errTODO
}
