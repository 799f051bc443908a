package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"stagehand/internal/api/wire"
)

// List returns up to limit events after event id after (limit 0: the
// daemon's default page, 100; it returns at most 1000 at once).
func (c Events) List(ctx context.Context, after int64, limit int) ([]wire.Event, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return list[wire.Event](ctx, c.t, path("events"), q)
}

// Follow calls fn with every event after event id after, then with
// each new one as it is recorded, until ctx ends or fn fails. A stream the
// daemon ends (a follower too far behind) is resumed from the last event
// seen; a daemon that goes away ends it with an error.
func (c Events) Follow(ctx context.Context, after int64, fn func(wire.Event) error) error {
	for {
		last, err := c.followOnce(ctx, after, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return err
		}
		after = last
	}
}

// followOnce reads one event stream until it ends and returns the last id
// seen.
func (c Events) followOnce(ctx context.Context, after int64, fn func(wire.Event) error) (int64, error) {
	h := http.Header{"Accept": {"text/event-stream"}}
	if after > 0 {
		h.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	resp, err := c.t.get(ctx, path("events"), url.Values{"follow": {"1"}}, h)
	if err != nil {
		return after, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var e wire.Event
			if err := json.Unmarshal([]byte(data.String()), &e); err != nil {
				return after, fmt.Errorf("event stream: %w", err)
			}
			data.Reset()
			if err := fn(e); err != nil {
				return after, err
			}
			after = e.ID
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return after, fmt.Errorf("event stream: %w", err)
	}
	return after, nil
}
