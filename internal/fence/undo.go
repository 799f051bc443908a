package fence

// undoStack collects the undo of each step of a multi-step change and runs
// them in reverse order unless the change succeeds (after Incus's
// shared/revert): s := undoStack{}; defer s.fail(); s.add(undo); ...;
// s.success().
type undoStack struct {
	undos []func()
	done  bool
}

func (s *undoStack) add(undo func()) { s.undos = append(s.undos, undo) }

// fail runs the undos, newest first, unless success was called.
func (s *undoStack) fail() {
	if s.done {
		return
	}
	s.done = true
	for i := len(s.undos) - 1; i >= 0; i-- {
		s.undos[i]()
	}
}

func (s *undoStack) success() { s.done = true }
