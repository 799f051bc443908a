package cluster

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
	"stagehand/internal/units"
)

// VCPUOvercommit is how many guest processors a host takes per processor
// it has: guests of a test lab are mostly idle, and Lab Manager allowed
// the same kind of overcommit. Memory is never overcommitted: a guest
// that cannot get its memory is killed, not slowed.
const VCPUOvercommit = 4

// Candidate is one host as placement sees it.
type Candidate struct {
	Name   string
	State  string // store.HostActive, HostDraining or HostRemoved
	Online bool
	// LastSeen is shown when the host is offline.
	LastSeen time.Time
	// Capacity and what the configurations deployed there already take.
	MemoryMiB, CPUs         int
	UsedMemoryMiB, UsedCPUs int
	// Held is the set of frozen layers (by id) the host already has.
	Held map[int64]bool
}

// LayerNeed is one frozen layer of the configuration's chains.
type LayerNeed struct {
	ID   int64
	Size int64
}

// Need is what a configuration deployed as a whole asks of one host.
type Need struct {
	Config    string
	MemoryMiB int
	CPUs      int
	// Layers are the frozen layers of every disk's chain (each once): a
	// host that lacks one pulls it before the deploy.
	Layers []LayerNeed
	// Host, when set, is the only host considered (`--host`).
	Host string
}

// Verdict is placement's finding about one host.
type Verdict struct {
	Host string
	Fits bool
	// Why the host does not fit; empty when it does.
	Why string
	// FreeMemoryMiB and FreeCPUs: what is left before this configuration.
	FreeMemoryMiB, FreeCPUs int
	// HeldLayers of the configuration's frozen layers, and the bytes of
	// the others, which a deploy there would pull.
	HeldLayers   int
	MissingBytes int64
}

// String is the verdict on one line, as `config deploy --explain` prints it.
func (v Verdict) String() string {
	if !v.Fits {
		return fmt.Sprintf("%s: no: %s", v.Host, v.Why)
	}
	return fmt.Sprintf("%s: fits: %d MiB and %d vCPUs free, holds %d of the chain's layers, would pull %s",
		v.Host, v.FreeMemoryMiB, v.FreeCPUs, v.HeldLayers, units.Bytes(v.MissingBytes))
}

// Decision is the chosen host and the verdicts on every host considered,
// best first.
type Decision struct {
	Host     string
	Verdicts []Verdict
}

// Explain is every verdict on its own line.
func (d Decision) Explain() string {
	lines := make([]string, len(d.Verdicts))
	for i, v := range d.Verdicts {
		lines[i] = v.String()
	}
	return strings.Join(lines, "\n")
}

// Place chooses the host for a whole configuration: among the active,
// online hosts with the memory and processors it needs, the one that
// already holds most of its chain (fewest bytes to pull), then the one
// with most free memory, then by name so that the choice is stable. When
// no host fits the error names every host and why (never a bare "no
// valid host"); the Decision's verdicts are filled in either way.
func Place(cands []Candidate, need Need) (Decision, error) {
	var d Decision
	for _, c := range cands {
		if c.State == store.HostRemoved {
			continue
		}
		if need.Host != "" && c.Name != need.Host {
			continue
		}
		d.Verdicts = append(d.Verdicts, judge(c, need))
	}
	if need.Host != "" && len(d.Verdicts) == 0 {
		return d, errdefs.NotFound("host %q: no such host", need.Host)
	}
	sort.SliceStable(d.Verdicts, func(i, j int) bool { return better(d.Verdicts[i], d.Verdicts[j]) })
	if len(d.Verdicts) == 0 {
		return d, errdefs.Unavailable("deploy %q: no host is registered", need.Config)
	}
	if !d.Verdicts[0].Fits {
		return d, errdefs.Unavailable("deploy %q (%d MiB, %d vCPUs): no host fits: %s",
			need.Config, need.MemoryMiB, need.CPUs, strings.ReplaceAll(d.Explain(), "\n", "; "))
	}
	d.Host = d.Verdicts[0].Host
	return d, nil
}

func judge(c Candidate, need Need) Verdict {
	v := Verdict{
		Host:          c.Name,
		FreeMemoryMiB: c.MemoryMiB - c.UsedMemoryMiB,
		FreeCPUs:      c.CPUs*VCPUOvercommit - c.UsedCPUs,
	}
	for _, l := range need.Layers {
		if c.Held[l.ID] {
			v.HeldLayers++
		} else {
			v.MissingBytes += l.Size
		}
	}
	switch {
	case !c.Online:
		v.Why = "offline"
		if !c.LastSeen.IsZero() {
			v.Why = fmt.Sprintf("offline (last seen %s)", c.LastSeen.UTC().Format(time.RFC3339))
		}
	case c.State != store.HostActive:
		v.Why = c.State
	case need.MemoryMiB > v.FreeMemoryMiB:
		v.Why = fmt.Sprintf("needs %d MiB of memory, %d free", need.MemoryMiB, max(v.FreeMemoryMiB, 0))
	case need.CPUs > v.FreeCPUs:
		v.Why = fmt.Sprintf("needs %d vCPUs, %d free (%d processors × %d)", need.CPUs, max(v.FreeCPUs, 0), c.CPUs, VCPUOvercommit)
	default:
		v.Fits = true
	}
	return v
}

func better(a, b Verdict) bool {
	if a.Fits != b.Fits {
		return a.Fits
	}
	if !a.Fits {
		return a.Host < b.Host
	}
	if a.MissingBytes != b.MissingBytes {
		return a.MissingBytes < b.MissingBytes
	}
	if a.FreeMemoryMiB != b.FreeMemoryMiB {
		return a.FreeMemoryMiB > b.FreeMemoryMiB
	}
	return a.Host < b.Host
}
