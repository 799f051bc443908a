package lab

import (
	"context"
	"fmt"

	"stagehand/internal/hypervisor"
	"stagehand/internal/store"
)

// StatusView is the lab at a glance: the accelerator (or that it is still
// being probed) and how many of each thing it holds.
type StatusView struct {
	DataDir        string
	Accel          hypervisor.AccelStatus
	Templates      int
	Networks       int
	Configs        int // configurations (library entries not counted)
	LibraryEntries int
	Deployed       int // configurations not undeployed
	RunningVMs     int // QEMU processes this daemon runs or re-adopted
}

// Status counts what the store holds; it never waits for the accelerator.
func (s *Service) Status(ctx context.Context) (*StatusView, error) {
	v := &StatusView{DataDir: s.dataDir, Accel: s.accel.Status()}
	err := s.store.View(ctx, func(tx store.Tx) error {
		ts, err := tx.Templates().List()
		if err != nil {
			return err
		}
		ns, err := tx.Networks().List()
		if err != nil {
			return err
		}
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		v.Templates, v.Networks = len(ts), len(ns)
		for _, c := range cs {
			if c.Kind == store.KindLibrary {
				v.LibraryEntries++
				continue
			}
			v.Configs++
			if c.State != store.StateUndeployed {
				v.Deployed++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	v.RunningVMs = s.deploys.Running()
	return v, nil
}
