package lab

// undoList collects the undo of each step done so far; run calls them in
// reverse order. It is the in-memory counterpart of the operation journal,
// for work whose effects are processes and links rather than files.
type undoList struct{ fns []func() }

func (u *undoList) add(fn func()) { u.fns = append(u.fns, fn) }

func (u *undoList) run() {
	for i := len(u.fns) - 1; i >= 0; i-- {
		u.fns[i]()
	}
	u.fns = nil
}
