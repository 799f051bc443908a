package lab_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

// TestRefusalsSpeakTheDomain: the lab's refusals name what is wrong in
// the domain's words, on one line, and never a command-line flag: the same
// message reaches a CLI user, an API client and the event log.
func TestRefusalsSpeakTheDomain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.smallTemplate("t1")
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"template without disks", func() error {
			_, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t2"})
			return err
		}, "at least one disk"},
		{"initrd without kernel", func() error {
			_, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t2", Disks: []string{"/nonexistent"}, Initrd: "/boot/initrd"})
			return err
		}, "an initrd needs a kernel"},
		{"cmdline without kernel", func() error {
			_, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "t2", Disks: []string{"/nonexistent"}, Cmdline: "console=ttyS0"})
			return err
		}, "a kernel command line needs a kernel"},
		{"configuration without VMs", func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "c1"})
			return err
		}, "at least one VM"},
		{"address without network", func() error {
			_, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "c1", VMs: []lab.VMSpec{{Name: "vm1", Template: "t1", IP: "10.9.0.5"}}})
			return err
		}, `address "10.9.0.5" needs a network`},
		{"network without pools", func() error {
			_, err := e.svc.Networks.Create(ctx, lab.NetworkSpec{Name: "n1", Subnet: "10.9.0.0/24"})
			return err
		}, "at least one pool range"},
		{"negative idle days", func() error {
			_, err := e.svc.Leases.Cleanup(ctx, lab.CleanupOptions{IdleDays: -1})
			return err
		}, "idle days -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want invalid with %q", err, tt.want)
			}
			if msg := err.Error(); strings.Contains(msg, "--") || strings.Contains(msg, "\n") {
				t.Errorf("%q names a flag or spans lines", msg)
			}
		})
	}
}
