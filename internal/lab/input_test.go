package lab_test

// Tests of the lab's refusal of bad and hostile input (issue 9 part 3, the
// security review's M2, M7, L2 and L5) over the real store and qemu-img.

import (
	"context"
	"errors"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

// A second network whose subnet overlaps an existing one is refused (M2:
// the review created a second 10.9.0.0/24 beside n1), and so are the
// reserved blocks, whatever the pools say.
func TestCreateNetworkRefusesOverlapAndReservedSubnets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("n1", "10.9.0.0/24", "10.9.0.10-10.9.0.50")
	for _, c := range []struct {
		spec lab.NetworkSpec
		kind error
	}{
		{lab.NetworkSpec{Name: "z4", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.60-10.9.0.70"}}, errdefs.ErrConflict},
		{lab.NetworkSpec{Name: "z5", Subnet: "10.9.0.128/25", Pools: []string{"10.9.0.160-10.9.0.170"}}, errdefs.ErrConflict},
		{lab.NetworkSpec{Name: "z6", Subnet: "10.0.0.0/8", Pools: []string{"10.1.0.10"}}, errdefs.ErrConflict},
		{lab.NetworkSpec{Name: "z0", Subnet: "0.0.0.0/0", Pools: []string{"0.0.0.2-255.255.255.254"}}, errdefs.ErrInvalid},
		{lab.NetworkSpec{Name: "z1", Subnet: "0.0.0.0/1", Pools: []string{"0.0.0.10-0.0.0.20"}}, errdefs.ErrInvalid},
		{lab.NetworkSpec{Name: "z2", Subnet: "127.0.0.0/8", Pools: []string{"127.0.0.10-127.0.0.20"}}, errdefs.ErrInvalid},
		{lab.NetworkSpec{Name: "z3", Subnet: "224.0.0.0/4", Pools: []string{"224.0.0.10-224.0.0.20"}}, errdefs.ErrInvalid},
	} {
		_, err := e.svc.CreateNetwork(ctx, c.spec)
		if !errors.Is(err, c.kind) {
			t.Errorf("network %s %s: want %v, got %v", c.spec.Name, c.spec.Subnet, c.kind, err)
		}
	}
	ns, err := e.svc.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 {
		t.Errorf("%d networks, want only n1: %+v", len(ns), ns)
	}
	// A neighbour that does not overlap is fine.
	e.network("n2", "10.9.1.0/24", "10.9.1.10")
}
