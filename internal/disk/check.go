package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"stagehand/internal/command"
)

// Errors from Check, for callers that want to tell them apart.
var (
	ErrCorrupt = errors.New("image corrupt")
	ErrLeaks   = errors.New("image leaks clusters")
)

// checkReport is the part of `qemu-img check --output=json` we report.
type checkReport struct {
	CheckErrors int   `json:"check-errors"`
	Corruptions int   `json:"corruptions"`
	Leaks       int   `json:"leaks"`
	EndOffset   int64 `json:"image-end-offset"`
}

// Check runs qemu-img check on one qcow2 layer. Corruptions wrap
// ErrCorrupt, leaked clusters (harmless to data, but wasted space and a
// sign of an unclean shutdown) wrap ErrLeaks; a file qemu-img cannot check
// at all gives a plain error. It opens the file without -U, so a layer in
// use by a running VM fails with a lock error instead of a half-true
// report.
func (q *QemuImg) Check(ctx context.Context, path string) error {
	path, err := absPath(path)
	if err != nil {
		return err
	}
	out, err := q.run(ctx, "check", "--output=json", "-f", "qcow2", path)
	// Exit codes, per qemu-img(1): 0 consistent, 1 check not completed,
	// 2 corrupted, 3 leaked clusters, 63 format cannot be checked.
	switch command.ExitCode(err) {
	case -1:
		if err == nil {
			return nil
		}
	case 2:
		r := decodeCheck(out)
		return fmt.Errorf("check %q: %w: %d corruptions, %d leaked clusters, %d check errors",
			path, ErrCorrupt, r.Corruptions, r.Leaks, r.CheckErrors)
	case 3:
		r := decodeCheck(out)
		return fmt.Errorf("check %q: %w: %d leaked clusters", path, ErrLeaks, r.Leaks)
	}
	return fmt.Errorf("check %q: could not check: %w", path, err)
}

// decodeCheck reads what it can of a check report; counts stay zero when
// qemu-img printed none.
func decodeCheck(out []byte) checkReport {
	var r checkReport
	_ = json.Unmarshal(out, &r)
	return r
}
