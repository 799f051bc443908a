package journal

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// FaultHook parses a fault specification for Config.FailAt (the lab's
// Options.FailAt), used by tests that drive the daemon binary (environment
// STAGEHAND_TEST_FAULT):
//
//	OP:STEP=fail    the step of that operation fails
//	OP:STEP=pause   the step blocks for an hour, so a test can SIGKILL the
//	                daemon in the middle of the operation
//
// Several specifications are separated by commas. An empty spec returns nil.
// A pause is announced on log (the daemon's).
func FaultHook(spec string, log *slog.Logger) (func(op, step string) error, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	type action struct{ pause bool }
	rules := map[string]action{}
	for _, part := range strings.Split(spec, ",") {
		key, what, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !strings.Contains(key, ":") || (what != "fail" && what != "pause") {
			return nil, fmt.Errorf("fault spec %q: want OP:STEP=fail|pause", part)
		}
		rules[key] = action{pause: what == "pause"}
	}
	return func(op, step string) error {
		a, ok := rules[op+":"+step]
		if !ok {
			return nil
		}
		if a.pause {
			log.Warn("test fault: pausing", "op", op, "step", step)
			time.Sleep(time.Hour)
		}
		return fmt.Errorf("injected fault at %s:%s", op, step)
	}, nil
}
