// Package labtest holds fakes at the lab's runtime seams (lab.Hypervisor,
// lab.VM, lab.Segments, lab.Fences) that keep the state a real host would
// keep (processes, taps, reservations, fences) and write every call as one
// line of text, so a test compares what the lab did with cmp.Diff.
//
// Disks are not faked: lab tests run over the real qemu-img, which is
// fast on the small images they use, and a fake would have to re-implement
// the backing chains the doctor checks.
package labtest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"stagehand/internal/lab"
)

// Calls is the transcript of the calls made to a set of fakes. Host
// specific names are shown stable: a VM as vmID (its store ID), a fence as
// cID (its configuration's), a tap as tapN and a MAC as macN in order of
// first appearance.
type Calls struct {
	// Fail, when set, is asked before each call with the call's line; an
	// error fails that call, which then changes nothing.
	Fail func(line string) error

	mu      sync.Mutex
	lines   []string
	aliases map[string]string
	counts  map[string]int
}

// call records line and returns the injected failure, if any.
func (c *Calls) call(format string, args ...any) error {
	line := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.lines = append(c.lines, line)
	fail := c.Fail
	c.mu.Unlock()
	if fail != nil {
		if err := fail(line); err != nil {
			return err
		}
	}
	return nil
}

// alias returns the stable name of a host name of the given kind ("tap",
// "mac"), made on first sight.
func (c *Calls) alias(kind, real string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aliases == nil {
		c.aliases, c.counts = map[string]string{}, map[string]int{}
	}
	key := kind + "\x00" + real
	if a, ok := c.aliases[key]; ok {
		return a
	}
	c.counts[kind]++
	a := fmt.Sprintf("%s%d", kind, c.counts[kind])
	c.aliases[key] = a
	return a
}

var (
	vmIDRe    = regexp.MustCompile(`^sh-[0-9a-f]+-(vm[0-9]+)$`)
	fenceIDRe = regexp.MustCompile(`^[0-9a-f]+-(c[0-9]+)$`)
)

// vmName shows a lab VM ID (sh-HOSTKEY-vmN) as vmN.
func vmName(id string) string {
	if m := vmIDRe.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return id
}

// fenceName shows a fence ID (HOSTKEY-cN) as cN.
func fenceName(id string) string {
	if m := fenceIDRe.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return id
}

// Take returns the lines recorded since the last Take and forgets them.
// The lab starts and stops the VMs of a configuration in parallel, so
// consecutive calls of one kind to the hypervisor or its VMs ("hv start",
// "vm kill", …) are sorted: their order is the scheduler's, not the lab's.
func (c *Calls) Take() []string {
	c.mu.Lock()
	lines := c.lines
	c.lines = nil
	c.mu.Unlock()
	for i := 0; i < len(lines); {
		j := i + 1
		for j < len(lines) && sameCall(lines[i], lines[j]) {
			j++
		}
		sort.Strings(lines[i:j])
		i = j
	}
	return lines
}

// sameCall reports whether two lines are calls of one kind to the
// hypervisor or its VMs.
func sameCall(a, b string) bool {
	wa, wb := strings.Fields(a), strings.Fields(b)
	if len(wa) < 3 || len(wb) < 3 || wa[0] != "hv" && wa[0] != "vm" {
		return false
	}
	return wa[0] == wb[0] && wa[1] == wb[1]
}

// Host is a fake machine for lab tests: one transcript, a hypervisor and
// the network plumbing. It outlives the lab.Services given it, so a test
// restarts the daemon by building a second Service after Restart.
type Host struct {
	Calls      *Calls
	Hypervisor *Hypervisor
	Segments   *Segments
	Fences     *Fences
}

// NewHost returns an empty Host.
func NewHost() *Host {
	c := &Calls{}
	return &Host{Calls: c, Hypervisor: NewHypervisor(c), Segments: NewSegments(c), Fences: NewFences(c)}
}

// Use sets the runtime seams of o to h's fakes.
func (h *Host) Use(o *lab.Options) {
	o.Hypervisor, o.Segments, o.Fences = h.Hypervisor, h.Segments, h.Fences
}

// Restart forgets what lives only in the daemon (DHCP servers and their
// reservations, the fences it holds, its VM handles), as a daemon that
// dies does. VMs, bridges, taps and fence namespaces stay.
func (h *Host) Restart() {
	h.Hypervisor.Restart()
	h.Segments.Forget()
	h.Fences.Forget()
}

// Leftovers lists everything a deployment holds on the host: running VMs,
// taps, reservations and fences. Empty after every deployment is gone.
func (h *Host) Leftovers() []string {
	var out []string
	for _, vm := range h.Hypervisor.Running() {
		out = append(out, "running "+vm)
	}
	out = append(out, h.Segments.Held()...)
	return append(out, h.Fences.Present()...)
}
