package cli

import (
	"context"
	"encoding/json"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// eventCmds builds `stagehand events`. Its methods share the app's client, flags and output.
type eventCmds struct{ *app }

func (a eventCmds) command() *cobra.Command {
	var (
		follow bool
		after  int64
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "events [--follow] [--after ID] [--limit N]",
		Short: "Show the event log: who changed what, when, with what result",
		Long: `Show the event log of state changes (create, clone, deploy, capture, archive,
lease expiry, ...): when, who, what and the result. --follow goes on printing
events as they happen (one line each; with -o json, one JSON object per
line) until interrupted.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if !follow {
				es, err := a.events(cmd.Context(), after, limit)
				if err != nil {
					return err
				}
				return a.print(es, func(w io.Writer) {
					row(w, "ID", "TIME", "ACTOR", "ACTION", "OBJECT", "SUBJECT", "RESULT", "DETAIL")
					for _, e := range es {
						eventRow(w, e)
					}
				})
			}
			err := a.client.Events().Follow(cmd.Context(), after, func(e wire.Event) error {
				if a.output == "json" {
					return writeJSONLine(a.stdout, e)
				}
				var b strings.Builder
				eventRow(&b, e)
				_, err := io.WriteString(a.stdout, strings.ReplaceAll(b.String(), "\t", "  "))
				return err
			})
			if cmd.Context().Err() != nil {
				return nil // interrupted: the normal end of a follow
			}
			return err
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&follow, "follow", false, "go on printing new events")
	f.Int64Var(&after, "after", 0, "only events after this id")
	f.IntVar(&limit, "limit", 0, "at most this many events (without --follow)")
	return cmd
}

// events reads up to limit events after event id after (limit 0: all of
// them), a page at a time: the daemon answers at most one page per request.
func (a eventCmds) events(ctx context.Context, after int64, limit int) ([]wire.Event, error) {
	var all []wire.Event
	for limit == 0 || len(all) < limit {
		want := 0 // the daemon's page size
		if limit > 0 {
			want = limit - len(all)
		}
		page, err := a.client.Events().List(ctx, after, want)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	return all, nil
}

func eventRow(w io.Writer, e wire.Event) {
	row(w, e.ID, when(e.At), e.Actor, e.Action, e.Object, e.Subject, e.Result, orDash(oneLine(e.Detail)))
}

// writeJSONLine writes v as one line of JSON (a stream of objects).
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
