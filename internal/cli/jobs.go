package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// pollWait is how long one /wait request may last: the daemon answers at
// once when the job ends, else after pollWait with the job's progress, so
// the display moves about once a second without polling in a tight loop.
const pollWait = time.Second

// jobCmds builds `stagehand job`. Its methods share the app's client, flags and output.
type jobCmds struct{ *app }

func (a jobCmds) command() *cobra.Command {
	return a.group("job", "List, show, wait for and cancel background jobs",
		lister[wire.Job]{
			use: "list", short: "List jobs",
			fetch: func(ctx context.Context, _ string) ([]wire.Job, error) {
				return a.client.Jobs().List(ctx)
			},
			header: []any{"ID", "KIND", "SUBJECT", "STATE", "PROGRESS", "STARTED", "ERROR"},
			row: func(j wire.Job) []any {
				return []any{j.ID, j.Kind, j.Subject, j.State, progressText(j), when(j.Started), orDash(oneLine(j.Error))}
			},
		}.command(a.app),
		showCommand(a.app, "show ID", "Show a job", func(ctx context.Context, name string) (*wire.Job, error) {
			return a.client.Jobs().Get(ctx, name)
		}, a.printJob),
		&cobra.Command{
			Use:   "wait ID",
			Short: "Wait for a job to end; fails when the job fails",
			Args:  exactArgs("ID"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				j, err := a.client.Jobs().Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				j, err = a.followJob(cmd.Context(), j, false)
				if j != nil {
					if perr := a.printJob(j); perr != nil && err == nil {
						err = perr
					}
				}
				return err
			}),
		},
		showCommand(a.app, "cancel ID", "Ask a job to stop; it rolls back what it did", func(ctx context.Context, name string) (*wire.Job, error) {
			return a.client.Jobs().Cancel(ctx, name)
		}, a.printJob),
	)
}

func (a jobCmds) printJob(j *wire.Job) error {
	return a.print(j, func(w io.Writer) {
		row(w, "ID:", j.ID)
		row(w, "Kind:", j.Kind)
		row(w, "Subject:", j.Subject)
		row(w, "State:", j.State)
		row(w, "Progress:", progressText(*j))
		row(w, "Started:", when(j.Started))
		row(w, "Ended:", when(j.Ended))
		if j.Error != "" {
			row(w, "Error:", oneLine(j.Error))
		}
	})
}

func progressText(j wire.Job) string {
	if j.Total <= 0 {
		return size(j.Done)
	}
	return fmt.Sprintf("%d%% (%s of %s)", j.Done*100/j.Total, size(j.Done), size(j.Total))
}

// waitForJob follows a job this command started until it ends, showing
// its progress, and returns its final snapshot, with an error when it did
// not succeed. An interrupt (Ctrl-C) asks the daemon to cancel the job,
// then waits for the job to roll back and end; a second one exits at once
// (main restores the signal's default action after the first).
func (a *app) waitForJob(ctx context.Context, j *wire.Job) (*wire.Job, error) {
	return a.followJob(ctx, j, true)
}

// jobThen ends a command that started job j: with --detach it prints the
// job, else it waits for the job (waitForJob) and, when it succeeded,
// calls then to print what the job made.
func (a *app) jobThen(ctx context.Context, j *wire.Job, detach bool, then func() error) error {
	if detach {
		return a.printStartedJob(j)
	}
	if _, err := a.waitForJob(ctx, j); err != nil {
		return err
	}
	return then()
}

// followJob waits for job j to end, long-polling its /wait endpoint and
// showing its progress on stderr. With cancelOnInterrupt, ctx ending
// cancels the job and the wait goes on until it ended; without, the wait
// stops and the job goes on (job wait: the job is not this command's).
func (a *app) followJob(ctx context.Context, j *wire.Job, cancelOnInterrupt bool) (*wire.Job, error) {
	p := a.progress(j.Kind + " " + j.Subject)
	interrupted := false
	for j.State == wire.JobRunning {
		p.update(j.Done, j.Total)
		next, err := a.client.Jobs().Wait(ctx, j.ID, pollWait)
		if err == nil {
			j = next
			continue
		}
		if ctx.Err() == nil || interrupted {
			p.finish(j.Done, j.Total, "failed")
			return nil, err
		}
		if !cancelOnInterrupt {
			p.finish(j.Done, j.Total, "interrupted")
			return nil, fmt.Errorf("stopped waiting; job %s goes on (stagehand job wait %s, stagehand job cancel %s): %w",
				j.ID, j.ID, j.ID, errdefs.ErrCanceled)
		}
		interrupted = true
		p.note(fmt.Sprintf("stagehand: canceling job %s (%s %s); waiting for it to roll back (Ctrl-C again to stop waiting)",
			j.ID, printable(j.Kind), printable(j.Subject)))
		ctx = context.WithoutCancel(ctx)
		if err := a.cancelJob(ctx, j.ID); err != nil {
			p.finish(j.Done, j.Total, "interrupted")
			return nil, err
		}
	}
	switch j.State {
	case wire.JobSucceeded:
		p.finish(j.Done, j.Total, "")
		if interrupted {
			return j, fmt.Errorf("interrupted, but job %s (%s %s) had already succeeded: %w", j.ID, j.Kind, j.Subject, errdefs.ErrCanceled)
		}
		return j, nil
	case wire.JobCanceled:
		p.finish(j.Done, j.Total, "canceled")
		return j, fmt.Errorf("job %s (%s %s) was canceled: %w", j.ID, j.Kind, j.Subject, errdefs.ErrCanceled)
	default:
		p.finish(j.Done, j.Total, j.State)
		return j, fmt.Errorf("job %s (%s %s) %s: %s", j.ID, j.Kind, j.Subject, j.State, oneLine(j.Error))
	}
}

// cancelTimeout bounds the cancel request sent after an interrupt (the
// wait that follows has none: a second interrupt ends it).
const cancelTimeout = 30 * time.Second

// cancelJob asks the daemon to cancel job id; a job that already ended
// is no failure (its final state tells what happened).
func (a *app) cancelJob(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	_, err := a.client.Jobs().Cancel(ctx, id)
	if err != nil && !errors.Is(err, errdefs.ErrConflict) {
		return fmt.Errorf("cancel job %s (it may go on: stagehand job show %s): %w", id, id, err)
	}
	return nil
}
