package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// pollWait is how long one /wait request may last: short, so the progress
// bar moves.
const pollWait = time.Second

func (a *app) jobCommand() *cobra.Command {
	return a.group("job", "List, show, wait for and cancel background jobs",
		&cobra.Command{
			Use:   "list",
			Short: "List jobs",
			Args:  exactArgs(),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				js, err := a.client.ListJobs(cmd.Context())
				if err != nil {
					return err
				}
				return a.print(js, func(w io.Writer) {
					row(w, "ID", "KIND", "SUBJECT", "STATE", "PROGRESS", "STARTED", "ERROR")
					for _, j := range js {
						row(w, j.ID, j.Kind, j.Subject, j.State, progressText(j), when(j.Started), orDash(oneLine(j.Error)))
					}
				})
			}),
		},
		&cobra.Command{
			Use:   "show ID",
			Short: "Show a job",
			Args:  exactArgs("ID"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				j, err := a.client.GetJob(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.printJob(j)
			}),
		},
		&cobra.Command{
			Use:   "wait ID",
			Short: "Wait for a job to end; fails when the job fails",
			Args:  exactArgs("ID"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				j, err := a.client.GetJob(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				j, err = a.waitForJob(cmd.Context(), j)
				if j != nil {
					if perr := a.printJob(j); perr != nil && err == nil {
						err = perr
					}
				}
				return err
			}),
		},
		&cobra.Command{
			Use:   "cancel ID",
			Short: "Ask a job to stop; it rolls back what it did",
			Args:  exactArgs("ID"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				j, err := a.client.CancelJob(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.printJob(j)
			}),
		},
	)
}

func (a *app) printJob(j *wire.Job) error {
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

// waitForJob polls the job until it ends, drawing a progress bar on stderr
// when stderr is a terminal. It returns the final snapshot, and an error
// when the job did not succeed. Interrupting the wait leaves the job
// running on the daemon.
func (a *app) waitForJob(ctx context.Context, j *wire.Job) (*wire.Job, error) {
	bar := &progressBar{w: a.stderr, on: isTerminal(a.stderr)}
	for j.State == wire.JobRunning {
		bar.draw(*j)
		next, err := a.client.WaitJob(ctx, j.ID, pollWait)
		if err != nil {
			bar.clear()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("stopped waiting; job %s goes on (stagehand job wait %s, stagehand job cancel %s): %w",
					j.ID, j.ID, j.ID, errdefs.ErrCanceled)
			}
			return nil, err
		}
		j = next
	}
	bar.clear()
	switch j.State {
	case wire.JobSucceeded:
		return j, nil
	case wire.JobCanceled:
		return j, fmt.Errorf("job %s (%s %s) was canceled: %w", j.ID, j.Kind, j.Subject, errdefs.ErrCanceled)
	default:
		return j, fmt.Errorf("job %s (%s %s) %s: %s", j.ID, j.Kind, j.Subject, j.State, oneLine(j.Error))
	}
}

// progressBar redraws one line with \r; it stays silent when off (stderr
// is not a terminal) so logs and captured output hold no control noise.
type progressBar struct {
	w     io.Writer
	on    bool
	drawn bool
}

const barWidth = 30

func (p *progressBar) draw(j wire.Job) {
	if !p.on {
		return
	}
	fill := 0
	if j.Total > 0 {
		fill = int(min(j.Done*barWidth/j.Total, barWidth))
	}
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", barWidth-fill)
	fmt.Fprintf(p.w, "\r%s %s [%s] %s\x1b[K", printable(j.Kind), printable(j.Subject), bar, progressText(j))
	p.drawn = true
}

func (p *progressBar) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}
