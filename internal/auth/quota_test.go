package auth

import (
	"math"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
)

func TestCheckQuota(t *testing.T) {
	limit := Quota{StoredVMs: 10, DeployedVMs: 4, VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}
	for _, tc := range []struct {
		name     string
		use, add Quota
		limit    Quota
		want     []string // parts of the message; nil when allowed
	}{
		{"within", Quota{DeployedVMs: 2}, Quota{DeployedVMs: 2}, limit, nil},
		{"exactly at the limit", Quota{StoredVMs: 9, MemoryMiB: 4096}, Quota{StoredVMs: 1, MemoryMiB: 4096}, limit, nil},
		{"one over", Quota{DeployedVMs: 3}, Quota{DeployedVMs: 2}, limit,
			[]string{`user "bob": quota exceeded: deployed VMs: 3 in use + 2 requested exceeds the limit of 4`}},
		{"units", Quota{MemoryMiB: 6144}, Quota{MemoryMiB: 4096}, limit,
			[]string{"memory: 6144 MiB in use + 4096 MiB requested exceeds the limit of 8192 MiB"}},
		{"every quota named", Quota{StoredVMs: 10, DeployedVMs: 4, VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}, Quota{1, 1, 1, 1, 1}, limit,
			[]string{"stored VMs: 10", "deployed VMs: 4", "vCPUs: 8", "memory: 8192 MiB", "disk: 100 GiB"}},
		{"unlimited", Quota{VCPUs: 1 << 40}, Quota{VCPUs: 1 << 40}, Quota{}, nil},
		{"one unlimited, one not", Quota{VCPUs: 1000}, Quota{VCPUs: 1, DiskGiB: 101}, Quota{DiskGiB: 100},
			[]string{"disk: 0 GiB in use + 101 GiB requested exceeds the limit of 100 GiB"}},
		{"over a lowered limit, adding nothing there", Quota{DeployedVMs: 9}, Quota{StoredVMs: 1}, limit, nil},
		{"freeing is never refused", Quota{DeployedVMs: 9}, Quota{DeployedVMs: -1}, limit, nil},
		{"no overflow", Quota{DiskGiB: math.MaxInt64 - 1}, Quota{DiskGiB: math.MaxInt64}, limit,
			[]string{"disk: 9223372036854775806 GiB in use"}},
		{"huge addition", Quota{}, Quota{StoredVMs: math.MaxInt64}, limit, []string{"stored VMs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckQuota(`user "bob"`, tc.use, tc.add, tc.limit)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if errdefs.Kind(err) != errdefs.ErrConflict {
				t.Fatalf("CheckQuota = %v, want a conflict", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not say %q", err, w)
				}
			}
		})
	}
}
