package auth

import (
	"fmt"
	"strings"

	"stagehand/internal/errdefs"
)

// Quota bounds what a user or a workspace may hold. Zero means unlimited.
// The same struct carries a use (what is held now) and an addition (what
// an operation would add).
type Quota struct {
	StoredVMs   int64 // VMs in configurations, deployed or not
	DeployedVMs int64
	VCPUs       int64 // of deployed VMs
	MemoryMiB   int64 // of deployed VMs
	DiskGiB     int64 // provisioned, all layers the scope owns
}

// CheckQuota returns nil when use+add stays within limit on every bounded
// quantity, else an error of kind conflict naming scope (`user "bob"`,
// `workspace "lab"`), each quota exceeded, its use, the addition and the
// limit.
//
// Conflict (409), not forbidden (403) nor invalid (400): the request is
// well formed and the caller has the right to make it; it clashes with
// the current state, and succeeds unchanged once something is undeployed
// or deleted. Keeping 403 for "your role or share does not allow this"
// keeps the authorization matrix honest.
//
// A quantity the operation does not increase is never refused, even when
// its use is already over a limit lowered since: undeploying must work.
func CheckQuota(scope string, use, add, limit Quota) error {
	var over []string
	check := func(name, unit string, use, add, limit int64) {
		// add > limit-use, written so it cannot overflow; limit-use is
		// safe for limit > 0 and use >= 0, and a negative use (a bug
		// elsewhere) counts as none.
		if limit <= 0 || add <= 0 {
			return
		}
		if add > limit-max(use, 0) {
			over = append(over, fmt.Sprintf("%s: %d%s in use + %d%s requested exceeds the limit of %d%s",
				name, use, unit, add, unit, limit, unit))
		}
	}
	check("stored VMs", "", use.StoredVMs, add.StoredVMs, limit.StoredVMs)
	check("deployed VMs", "", use.DeployedVMs, add.DeployedVMs, limit.DeployedVMs)
	check("vCPUs", "", use.VCPUs, add.VCPUs, limit.VCPUs)
	check("memory", " MiB", use.MemoryMiB, add.MemoryMiB, limit.MemoryMiB)
	check("disk", " GiB", use.DiskGiB, add.DiskGiB, limit.DiskGiB)
	if len(over) == 0 {
		return nil
	}
	return errdefs.Conflict("%s: quota exceeded: %s", scope, strings.Join(over, "; "))
}
