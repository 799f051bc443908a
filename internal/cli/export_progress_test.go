package cli

import "time"

// SetProgressTiming sets how long an operation runs before its progress
// shows and the longest gap between two plain progress lines, until the
// returned function restores them.
func SetProgressTiming(show, line time.Duration) (restore func()) {
	oldShow, oldLine := showAfter, lineEvery
	showAfter, lineEvery = show, line
	return func() { showAfter, lineEvery = oldShow, oldLine }
}

// Size is size: how the CLI writes a byte count.
var Size = size
