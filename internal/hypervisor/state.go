package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// QEMU 7.2 has no "file:" migration URI (it came in 8.2), so a state goes
// through "fd:": the daemon opens the file and passes QEMU its descriptor
// (migrationFile).

// migratePoll is how often migration progress is polled. A state is
// written while the guests are paused and loaded while a deploy's caller
// waits: each poll is one small QMP round trip, and every 10 ms instead
// of 50 takes 20 ms on average off both.
const migratePoll = 10 * time.Millisecond

// SaveState suspends the VM to file: the guest is paused, its whole state
// (memory, devices, clocks) is written, and QEMU exits. Starting a Spec
// with IncomingStateFile set to file resumes it where it stopped. The
// disks are not copied: the state is only valid with the same disk layers,
// untouched in between. If saving fails the guest runs on and no file is
// left.
func (v *VM) SaveState(ctx context.Context, file string) (err error) {
	if !filepath.IsAbs(file) {
		return fmt.Errorf("save vm %q: state file %q is not an absolute path", v.id, file)
	}
	fail := func(err error) error { return fmt.Errorf("save vm %q to %s: %w", v.id, file, err) }
	began := time.Now()

	wasRunning := false
	if st, err := v.Status(ctx); err != nil {
		return fail(err)
	} else if st == StateRunning {
		wasRunning = true
	}
	if _, err := v.execute(ctx, "stop", nil); err != nil {
		return fail(err)
	}

	// The partial file is created here, private, written by QEMU through
	// the descriptor it is given, and only renamed once complete.
	partial := file + ".partial"
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	defer func() {
		if err == nil {
			return
		}
		os.Remove(partial)
		// Leave the guest as we found it: running, on a fresh context
		// since ctx may be what failed.
		if wasRunning && v.proc.alive() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, cerr := v.execute(cctx, "migrate_cancel", nil); cerr != nil {
				v.log.Warn("migrate_cancel after failed save", "err", cerr)
			}
			if _, cerr := v.execute(cctx, "cont", nil); cerr != nil {
				v.log.Error("cannot resume guest after failed save", "err", cerr)
			}
		}
	}()

	// The default bandwidth cap (32 MiB/s) is for live migration over a
	// network; the guest is paused and the target is a local file.
	if _, err := v.execute(ctx, "migrate-set-parameters",
		map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return fail(err)
	}
	uri, err := v.migrationFile(ctx, "state-out", f)
	if err != nil {
		return fail(err)
	}
	if _, err := v.execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return fail(err)
	}
	if err := waitMigration(ctx, v); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(partial, file); err != nil {
		return fail(err)
	}
	syncFile(filepath.Dir(file))

	// The state is safe; from here on a failure to quit only means the
	// process has to be killed.
	if err := v.quit(ctx); err != nil {
		os.Remove(file)
		return fail(err)
	}
	size := int64(0)
	if fi, err := os.Stat(file); err == nil {
		size = fi.Size()
	}
	v.log.Info("saved state", "file", file, "bytes", size, "elapsed", time.Since(began).Round(time.Millisecond))
	return nil
}

// waitMigration polls query-migrate until the migration completes or fails.
func waitMigration(ctx context.Context, v *VM) error {
	const query = "query-migrate"
	t := time.NewTicker(migratePoll)
	defer t.Stop()
	for {
		ret, err := v.execute(ctx, query, nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return fmt.Errorf("%s: %w", query, err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if st.ErrorDesc == "" {
				st.ErrorDesc = "no reason given"
			}
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// loadState feeds a saved state into a QEMU started with -incoming defer
// and waits until it is loaded; the caller then continues the guest.
func loadState(ctx context.Context, v *VM, file string) error {
	began := time.Now()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	uri, err := v.migrationFile(ctx, "state-in", f)
	if err != nil {
		return err
	}
	if _, err := v.execute(ctx, "migrate-incoming", map[string]any{"uri": uri}); err != nil {
		return err
	}
	// While loading, the run state is "inmigrate"; QEMU exits if the
	// stream is bad, which shows up as a disconnect carrying its log.
	t := time.NewTicker(migratePoll)
	defer t.Stop()
	for {
		st, err := v.Status(ctx)
		if err != nil {
			return err
		}
		if st != StateInMigrate {
			v.log.Info("loaded state", "file", file, "status", st, "elapsed", time.Since(began).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
