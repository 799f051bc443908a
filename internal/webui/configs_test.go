package webui_test

import (
	"context"
	"fmt"
	"html"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"stagehand/internal/lab"
	"stagehand/internal/webui"
)

// listRows returns the data-name of the rows of a list page or fragment,
// in order, and the marker's URL ("" when none follows).
func listRows(t *testing.T, page string) (names []string, more string) {
	t.Helper()
	if !strings.Contains(page, "<html") {
		// A fragment: rows parse as rows only inside a table.
		page = "<table><tbody>" + page + "</tbody></table>"
	}
	for _, tr := range elements(t, page, "tr") {
		if n := tr["data-name"]; n != "" {
			names = append(names, n)
		}
		if m, ok := tr["data-more"]; ok {
			if more != "" {
				t.Fatalf("two markers in one part of the list: %q and %q", more, m)
			}
			more = m
		}
	}
	return names, more
}

// longList is the seeded console with 79 more configurations, lab-000 …
// lab-078, described "even one" or "odd one": 80 in all.
func longList(t *testing.T) *console {
	t.Helper()
	c := newConsole(t, webui.Options{})
	for i := 0; i < 79; i++ {
		desc := "even"
		if i%2 == 1 {
			desc = "odd"
		}
		if _, err := c.Configs.Create(context.Background(), lab.ConfigSpec{Name: fmt.Sprintf("lab-%03d", i), Description: desc + " one",
			VMs: []lab.VMSpec{{Name: "vm", Template: "tmpl"}}}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestConfigsListLoadsInParts: with more configurations than the first
// screenful, /ui/configs holds the first 50 by name and a marker whose
// fragment holds the rest, once each and in order; a filter (?q=, ?state=)
// is applied by the server to the page and to its fragments, and shown in
// the filter's inputs.
func TestConfigsListLoadsInParts(t *testing.T) {
	c := longList(t)
	session := c.member(t, "author", "author")

	page := c.page(t, session, "/ui/configs")
	first, more := listRows(t, page)
	if len(first) != 50 || first[0] != "lab-000" || first[49] != "lab-049" {
		t.Fatalf("the page holds %d rows %v…; want lab-000 … lab-049", len(first), first[:min(3, len(first))])
	}
	if more == "" || !strings.Contains(page, "Show 30 more") {
		t.Fatalf("the page has no marker for the 30 rows left (marker %q)", more)
	}
	rest, next := listRows(t, c.page(t, session, more))
	if next != "" || len(rest) != 30 || rest[0] != "lab-050" || rest[28] != "lab-078" || rest[29] != "web" {
		t.Errorf("the marker's fragment holds %d rows (%v … ), marker %q; want lab-050 … lab-078, web and no marker", len(rest), rest[:min(2, len(rest))], next)
	}

	// The filter: every word, case-insensitive, in name, owner, workspace
	// or description.
	page = c.page(t, session, "/ui/configs?q="+url.QueryEscape("ODD lab-0"))
	odd, more := listRows(t, page)
	if len(odd) != 39 || odd[0] != "lab-001" || more != "" {
		t.Errorf("?q=ODD lab-0: %d rows from %v, marker %q; want the 39 odd ones, no marker", len(odd), odd[:min(1, len(odd))], more)
	}
	if !strings.Contains(page, `value="ODD lab-0"`) {
		t.Errorf("?q=ODD lab-0: the search input does not show the filter")
	}
	part, more := listRows(t, c.page(t, session, "/ui/config-rows?q=even"))
	if len(part) != 40 || more != "" {
		t.Errorf("/ui/config-rows?q=even: %d rows, marker %q; want 40 (lab-000 … lab-078 even), no marker", len(part), more)
	}
	none, _ := listRows(t, c.page(t, session, "/ui/config-rows?state=deployed"))
	if len(none) != 0 {
		t.Errorf("?state=deployed: %d rows, want none", len(none))
	}
	all, more := listRows(t, c.page(t, session, "/ui/config-rows?state=undeployed"))
	if len(all) != 50 || more == "" {
		t.Errorf("?state=undeployed: %d rows, marker %q; want the first 50 and a marker", len(all), more)
	}
	if u, _ := url.Parse(html.UnescapeString(more)); u == nil || u.Query().Get("state") != "undeployed" || u.Query().Get("after") != "lab-049" {
		t.Errorf("the filtered marker %q does not carry the filter and the last row", more)
	}
}

// TestConfigsListInTheBrowser: in Chromium, the list shows its first 50
// rows and loads the other 30 when its marker is scrolled into view; a new
// configuration among the loaded rows appears in its place from the event
// stream, one past them is left to the marker; typing in the search box
// loads the list again filtered by the server (and the address keeps the
// filter), and clearing it brings the first part back.
func TestConfigsListInTheBrowser(t *testing.T) {
	c := longList(t)
	session := c.member(t, "author", "author")
	ctx := browse(t, c, session)
	rowsJS := `Array.from(document.querySelectorAll("#configs tbody tr[data-name]:not([hidden])")).map((tr) => tr.dataset.name)`
	count := func(what string, want int, more bool) []string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			names, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](rowsJS))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			marker, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector("#configs tr[data-more]")`))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if len(names) == want && marker == more {
				return names
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rows shown (marker %v), want %d (marker %v)", what, len(names), marker, want, more)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(c.srv.URL+"/ui/configs"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="lab-000"]`))); err != nil {
		t.Fatal(err)
	}
	count("the page", 50, true)

	// Live: one among the loaded rows, one past them.
	for _, name := range []string{"lab-000a", "zz-last"} {
		if _, err := c.Configs.Create(context.Background(), lab.ConfigSpec{Name: name, VMs: []lab.VMSpec{{Name: "vm", Template: "tmpl"}}}); err != nil {
			t.Fatal(err)
		}
	}
	names := count("after two creates", 51, true)
	if names[1] != "lab-000a" {
		t.Errorf("the new row is at %v, want second", names[:3])
	}

	if err := chromedp.Do(ctx, chromedp.ScrollIntoView(chromedp.CSS(`tr[data-more]`))); err != nil {
		t.Fatal(err)
	}
	names = count("scrolled to the end", 82, false)
	if names[80] != "web" || names[81] != "zz-last" {
		t.Errorf("the list ends %v, want web, zz-last", names[78:])
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(c.srv.URL+"/ui/configs"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="lab-000"]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-filter-text]`), "odd")); err != nil {
		t.Fatal(err)
	}
	names = count("filtered by odd", 39, false)
	if names[0] != "lab-001" || names[38] != "lab-077" {
		t.Errorf("filtered: %s … %s, want lab-001 … lab-077", names[0], names[38])
	}
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || !strings.Contains(loc, "q=odd") {
		t.Errorf("the address %q does not keep the filter (%v)", loc, err)
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(() => {
  const el = document.querySelector("[data-filter-text]");
  el.value = "";
  el.dispatchEvent(new Event("input", {bubbles: true}));
})()`)); err != nil {
		t.Fatal(err)
	}
	count("the filter cleared", 50, true)
}
