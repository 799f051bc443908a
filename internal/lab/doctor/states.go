package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ProblemMissingState is a VM recorded saved (its next deploy resumes it)
// whose state file is gone: that deploy boots it instead. Not repaired:
// the record says what the guest was; deploying it boots it and clears it.
const ProblemMissingState = "missing-state"

// vmSaved is the VM state of a suspended guest (lab/deploy's).
const vmSaved = "saved"

// checkStates compares the saved states on disk (StateDir: one file a VM,
// instant copies' shared states being hard links of one another; and
// SnapshotDir: snapshots' states) with the records: a file no VM or
// snapshot refers to is an orphan (a crash between an instant clone's
// commit and its states' renaming leaves one), a saved VM of this host
// without its file is reported.
func (d *run) checkStates() error {
	if d.dr.cfg.StateDir == "" {
		return nil
	}
	known := map[string]bool{}
	for _, c := range d.configs {
		for _, vm := range c.VMs {
			f := filepath.Join(d.dr.cfg.StateDir, fmt.Sprintf("vm-%d.state", vm.ID))
			known[f] = true
			// A VM of a spread configuration whose tops are on another
			// host (not gathered yet) has its state there too.
			holder := c.Host
			if vm.Host != "" {
				holder = vm.Host
			}
			here := d.dr.cfg.Host == "" || holder == "" || holder == d.dr.cfg.Host
			if !here || vm.State != vmSaved || d.dr.cfg.Lab.Busy(c.Name) {
				continue
			}
			if _, err := os.Stat(d.dr.abs(f)); errors.Is(err, fs.ErrNotExist) {
				d.add(Problem{Kind: ProblemMissingState, Subject: c.Name,
					Detail: fmt.Sprintf("VM %s is recorded saved, but its state %s is missing: its next deploy boots it", vm.Name, f)})
			}
		}
	}
	for _, sn := range d.snapshots {
		for _, st := range sn.States {
			known[st.Path] = true
		}
	}
	for _, dir := range []string{d.dr.cfg.StateDir, d.dr.cfg.SnapshotDir} {
		if dir == "" {
			continue
		}
		es, err := os.ReadDir(d.dr.abs(dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range es {
			rel := filepath.Join(dir, e.Name())
			// A state a VM resumed from, being freed in the background
			// (lab/deploy's ResumedMark; a start removes what a crash left).
			if strings.Contains(e.Name(), ".resumed-") {
				continue
			}
			if known[rel] || d.inFlight[rel] || d.reported[d.dr.abs(rel)] || d.busyOp() {
				continue
			}
			d.leftover(d.dr.abs(rel), e.IsDir(), "saved state no VM or snapshot refers to")
		}
	}
	return nil
}

// busyOp reports whether some journalled operation may be making files
// the records do not name yet: then an unknown state file may be its.
func (d *run) busyOp() bool {
	for _, op := range d.ops {
		if d.dr.cfg.Lab.Busy(op.Subject) {
			return true
		}
	}
	return false
}
