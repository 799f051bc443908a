package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/store"
)

// Placement of a deploy over the hosts sharing the store (issue 13): the
// home host of a configuration (store.Config.Host, the host holding its
// writable tops) asks cluster.Place where it runs; when another host is
// chosen the configuration moves there first (move.go).

// HostLink is what the lab needs of the other hosts (*hostlink.Puller):
// pull frozen layers and tops, ask a host to adopt a configuration and to
// deploy it. Without one (SQLite: one host) a deploy never leaves its host.
type HostLink interface {
	PullChain(ctx context.Context, peers []hostlink.Peer, want []hostlink.LayerRef, opts hostlink.ChainOptions) (hostlink.ChainResult, error)
	Adopt(ctx context.Context, peer hostlink.Peer, config string) (hostlink.AdoptResult, error)
	Deploy(ctx context.Context, peer hostlink.Peer, config string, req hostlink.DeployRequest) error
	// AdoptVM, ReleaseVM, StartPart and StopPart are a spread
	// deployment's (spread.go, hostlink.SpreadMember).
	AdoptVM(ctx context.Context, peer hostlink.Peer, config, vm string) (hostlink.AdoptResult, error)
	ReleaseVM(ctx context.Context, peer hostlink.Peer, config, vm string) error
	StartPart(ctx context.Context, peer hostlink.Peer, config string) error
	StopPart(ctx context.Context, peer hostlink.Peer, config string, saveState bool) error
}

// Placement is a deploy's placement, as --explain shows it.
type Placement struct {
	// Host is the chosen host; Moved is set when the configuration moved
	// there from its home to be deployed.
	Host  string
	Moved bool
	// MovedBytes is what the move pulled (tops and missing frozen layers).
	MovedBytes int64
	// Verdicts are every host's, best first.
	Verdicts []cluster.Verdict
	// VMs are a spread deploy's placements, one per VM (Host is then
	// the home, and Verdicts every VM's in turn).
	VMs []VMPlacement
}

// chainOf returns c's frozen layers (each once, in the order met from the
// tops down) and its writable tops.
func chainOf(idx layerIndex, c *store.Config) (frozen, tops []store.Layer, err error) {
	seen := map[int64]bool{}
	for _, vm := range c.VMs {
		for _, d := range vm.Disks {
			ch, err := idx.chain(d.TopLayerID)
			if err != nil {
				return nil, nil, fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
			for _, l := range ch {
				if seen[l.ID] {
					continue
				}
				seen[l.ID] = true
				if l.Frozen {
					frozen = append(frozen, l)
				} else {
					tops = append(tops, l)
				}
			}
		}
	}
	return frozen, tops, nil
}

// placementInputs reads, inside tx, what cluster.Place weighs for c: every
// host with the memory and vCPUs the configurations deployed there take
// (c excluded) and the frozen layers it holds (all of them with shared
// layers), and c's memory, vCPUs and frozen layers with their sizes.
func placementInputs(tx store.Tx, c *store.Config, shared bool, now time.Time) ([]cluster.Candidate, cluster.Need, error) {
	need := cluster.Need{Config: c.Name}
	for _, vm := range c.VMs {
		need.MemoryMiB += vm.MemoryMiB
		need.CPUs += vm.CPUs
	}
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, need, err
	}
	frozen, _, err := chainOf(idx, c)
	if err != nil {
		return nil, need, fmt.Errorf("configuration %q: %w", c.Name, err)
	}
	for _, l := range frozen {
		need.Layers = append(need.Layers, cluster.LayerNeed{ID: l.ID, Size: l.Size})
	}
	hosts, err := tx.Hosts().List()
	if err != nil {
		return nil, need, err
	}
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, need, err
	}
	usedMem, usedCPUs := map[string]int{}, map[string]int{}
	for _, o := range cs {
		if o.ID == c.ID || o.Host == "" {
			continue
		}
		switch o.State {
		case store.StateDeployed, store.StateDeploying, store.StateUndeploying:
		default:
			continue
		}
		for _, vm := range o.VMs {
			h := o.Host
			if vm.Host != "" {
				h = vm.Host // a VM of a spread deployment
			}
			usedMem[h] += vm.MemoryMiB
			usedCPUs[h] += vm.CPUs
		}
	}
	cands := make([]cluster.Candidate, 0, len(hosts))
	for _, h := range hosts {
		cand := cluster.Candidate{
			Name: h.Name, State: h.State, Online: !cluster.Offline(h, now), LastSeen: h.LastSeen,
			MemoryMiB: h.MemoryMiB, CPUs: h.CPUs, UsedMemoryMiB: usedMem[h.Name], UsedCPUs: usedCPUs[h.Name],
			Held: map[int64]bool{},
		}
		if shared {
			for _, l := range frozen {
				cand.Held[l.ID] = true
			}
		} else {
			ids, err := tx.HostLayers().OfHost(h.ID)
			if err != nil {
				return nil, need, err
			}
			for _, id := range ids {
				cand.Held[id] = true
			}
		}
		cands = append(cands, cand)
	}
	return cands, need, nil
}

// stillFits checks, inside the transaction that marks c deploying on this
// host, that this host still has the memory and vCPUs placement found for
// it. Placement reads the hosts before, outside that transaction, so two
// deploys at once could both have counted the same free memory; the store
// runs the two transactions one after the other (SQLite has one writer;
// PostgreSQL runs them SERIALIZABLE and retries the loser), so the second
// sees the first deploying and is refused, saying why, instead of
// overcommitting the host's memory.
func (s moves) stillFits(tx store.Tx, c *store.Config) error {
	cands, need, err := placementInputs(tx, c, s.sharedLayers, time.Now())
	if err != nil {
		return err
	}
	need.Host = s.hostName
	if _, err := cluster.Place(cands, need); err != nil {
		return fmt.Errorf("host %q no longer has room for it (a deploy at the same time took what placement counted; deploy it again to place it anew): %w", s.hostName, err)
	}
	return nil
}

// stillFitsEach is stillFits for a spread deployment, checked in the
// same transaction: each VM's host (store.VM.Host, else this one, its
// home) must still have the VM's memory and vCPUs, the VMs before it
// counted, as placeSpread counted them.
func (s moves) stillFitsEach(tx store.Tx, c *store.Config) error {
	cands, _, err := placementInputs(tx, c, s.sharedLayers, time.Now())
	if err != nil {
		return err
	}
	for _, vm := range c.VMs {
		host := vm.Host
		if host == "" {
			host = s.hostName
		}
		need := cluster.Need{Config: c.Name + "/" + vm.Name, MemoryMiB: vm.MemoryMiB, CPUs: vm.CPUs, Host: host}
		if _, err := cluster.Place(cands, need); err != nil {
			return fmt.Errorf("VM %q: host %q no longer has room for it (a deploy at the same time took what placement counted; deploy it again to place it anew): %w", vm.Name, host, err)
		}
		for i := range cands {
			if cands[i].Name == host {
				cands[i].UsedMemoryMiB += vm.MemoryMiB
				cands[i].UsedCPUs += vm.CPUs
			}
		}
	}
	return nil
}

// placing reports whether a deploy asks cluster.Place: always with other
// hosts to go to, and on one host only when the caller asked for a host
// or an explanation (otherwise it is today's deploy, unchanged).
func (s moves) placing(host string, explain bool) bool {
	if s.hostName == "" {
		return false
	}
	return s.link != nil || s.sharedLayers || host != "" || explain
}

// place decides where the configuration name is deployed. It first gives
// a content hash to the frozen layers of its chain that have none and
// that this host holds (layers frozen before hashes were recorded: they
// get one at their first deploy), so that every size placement weighs and
// every pull asks for is known.
func (s moves) place(ctx context.Context, name, host string) (cluster.Decision, error) {
	if err := s.hashUnhashed(ctx, name); err != nil {
		return cluster.Decision{}, err
	}
	var d cluster.Decision
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		cands, need, err := placementInputs(tx, c, s.sharedLayers, time.Now()) // heartbeats are wall-clock times, not the lease clock
		if err != nil {
			return err
		}
		need.Host = host
		d, err = cluster.Place(cands, need)
		return err
	})
	if err != nil {
		return d, fmt.Errorf("place %q: %w", name, err)
	}
	return d, nil
}

// hashUnhashed hashes the frozen layers of name's chain that have no
// content hash yet and whose file is here, and records this host as
// holding them.
func (s moves) hashUnhashed(ctx context.Context, name string) error {
	var todo []store.Layer
	if err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		frozen, _, err := chainOf(idx, c)
		for _, l := range frozen {
			if l.SHA256 == "" {
				todo = append(todo, l)
			}
		}
		return err
	}); err != nil {
		return fmt.Errorf("place %q: %w", name, err)
	}
	for _, l := range todo {
		sum, size, err := hostlink.HashFile(ctx, s.abs(l.Path))
		if errors.Is(err, os.ErrNotExist) {
			continue // another host holds it and hashes it at its own first use
		}
		if err != nil {
			return fmt.Errorf("place %q: %w", name, err)
		}
		if err := s.update(ctx, func(tx store.Tx) error {
			cur, err := tx.Layers().Get(l.ID)
			if err != nil {
				return err
			}
			cur.SHA256, cur.Size = sum, size
			if err := tx.Layers().Update(cur); err != nil {
				return err
			}
			return s.recordHeld(tx, l.ID)
		}); err != nil {
			return fmt.Errorf("place %q: record the hash of layer %s: %w", name, l.Path, err)
		}
		s.log.Info("hashed a frozen layer at its first deploy", "config", name, "layer", l.Path, "sha256", sum, "bytes", size)
	}
	return nil
}

// hashFrozen returns the content hash and size of a layer file this host
// has just frozen, for the commit that records it frozen.
func (s *core) hashFrozen(ctx context.Context, rel string) (sum string, size int64, err error) {
	return hostlink.HashFile(ctx, s.abs(rel))
}

// recordHeld records, inside tx, that this host holds frozen layer id.
// With shared layers every host holds every layer and nothing is recorded;
// a lab with no host name (tests, tools) records nothing either.
func (s *core) recordHeld(tx store.Tx, layerID int64) error {
	if s.sharedLayers || s.hostName == "" {
		return nil
	}
	h, err := tx.Hosts().Get(s.hostName)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.HostLayers().Add(h.ID, layerID)
}

// peers returns the hosts of names as pull peers, in that order, skipping
// this one and any unknown.
func peers(tx store.Tx, self string, names ...string) ([]hostlink.Peer, error) {
	var out []hostlink.Peer
	seen := map[string]bool{self: true}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		h, err := tx.Hosts().Get(n)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, hostlink.Peer{Name: h.Name, URL: h.AdvertiseURL, Fingerprint: h.CertFingerprint})
	}
	return out, nil
}

// layersElsewhere is the doctor's Elsewhere with other hosts: every layer
// except the frozen ones this host holds and the chains of the
// configurations whose home it is. Nil on one host or with shared layers,
// where every file is here.
func (s moves) layersElsewhere() func(tx store.Tx) (map[int64]bool, error) {
	if s.link == nil || s.sharedLayers || s.hostName == "" {
		return nil
	}
	return func(tx store.Tx) (map[int64]bool, error) {
		idx, err := loadLayers(tx)
		if err != nil {
			return nil, err
		}
		here := map[int64]bool{}
		if h, err := tx.Hosts().Get(s.hostName); err == nil {
			ids, err := tx.HostLayers().OfHost(h.ID)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				here[id] = true
			}
		}
		cs, err := tx.Configs().List()
		if err != nil {
			return nil, err
		}
		for i := range cs {
			for _, vm := range cs[i].VMs {
				// A spread configuration's VM may be held by another
				// host (holders.holder), its tops with it.
				if vm.Host != "" && vm.Host != s.hostName || vm.Host == "" && s.home(&cs[i]) != s.hostName {
					continue
				}
				frozen, tops, err := chainOf(idx, &store.Config{Name: cs[i].Name, VMs: []store.VM{vm}})
				if err != nil {
					continue // the doctor reports the broken chain itself
				}
				for _, l := range append(frozen, tops...) {
					here[l.ID] = true
				}
			}
		}
		out := map[int64]bool{}
		for id := range idx {
			if !here[id] {
				out[id] = true
			}
		}
		return out, nil
	}
}
