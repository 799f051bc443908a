package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/store"
)

// eventSubjects renders events as "actor action object/subject".
func eventSubjects(es []wire.Event) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Actor+" "+e.Action+" "+e.Object+"/"+e.Subject)
	}
	return out
}

// follow reads the event stream of tok until an event's subject is
// until, and returns the events read.
func follow(t *testing.T, url, tok, until string) <-chan []wire.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/events?follow=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	out := make(chan []wire.Event, 1)
	go func() {
		defer cancel()
		defer resp.Body.Close()
		var got []wire.Event
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e wire.Event
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				break
			}
			got = append(got, e)
			if e.Subject == until {
				break
			}
		}
		out <- got
	}()
	return out
}

// TestEventsVisibleToTheirReader: alice (admin of shared workspace w1)
// and bob (admin of w2) each read, listed and followed, the events of the
// objects they may see and the events they caused, and none of the
// other's; a configuration of default/main shared with alice brings its
// events to her (not to bob); alice's stream shows the event of a
// network of w1 the system administrator made after she began to follow;
// the events of an object deleted are its actor's and the
// administrators' only, so once it is deleted she no longer lists it; the
// system administrator reads every event. The directory's events (a
// share) are followed as they are listed (TestDirectoryEventsAreFollowed).
func TestEventsVisibleToTheirReader(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	admin := l.AdminToken(t)
	users := map[string]*store.User{"alice": l.User(t, "alice", false), "bob": l.User(t, "bob", false)}
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		for _, m := range []struct{ user, ws string }{{"alice", "w1"}, {"bob", "w2"}} {
			ws := &store.Workspace{OrgID: org.ID, Name: m.ws, Kind: store.WorkspaceShared}
			if err := tx.Workspaces().Create(ws); err != nil {
				return err
			}
			u := users[m.user]
			if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: string(auth.RoleAdmin)}); err != nil {
				return err
			}
			u.DefaultWorkspaceID = ws.ID
			if err := tx.Users().Update(u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{"alice": l.Token(t, "alice", apitest.TokenOptions{}), "bob": l.Token(t, "bob", apitest.TokenOptions{}), "admin": admin}
	do := func(who, method, path, body string, want int) {
		t.Helper()
		hdr := map[string]string{"Authorization": "Bearer " + tokens[who], "Content-Type": "application/json"}
		if status, _, b := sendAs(t, srv, method, path, body, hdr); status != want {
			t.Fatalf("%s %s %s: %d %s, want %d", who, method, path, status, b, want)
		}
	}
	network := func(name string, n int) string {
		return fmt.Sprintf(`{"name":%q,"subnet":"10.8.%d.0/24","pools":["10.8.%d.10-10.8.%d.20"]}`, name, n, n, n)
	}
	// The system administrator's networks go to w1: alice reads the
	// event of n-sys while it exists, not once it is deleted.
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		u, err := tx.Users().Get("admin")
		if err != nil {
			return err
		}
		u.DefaultWorkspaceID = users["alice"].DefaultWorkspaceID
		return tx.Users().Update(u)
	}); err != nil {
		t.Fatal(err)
	}
	streams := map[string]<-chan []wire.Event{
		"alice": follow(t, srv.URL, tokens["alice"], "n-alice-end"),
		"bob":   follow(t, srv.URL, tokens["bob"], "n-bob-end"),
		"admin": follow(t, srv.URL, admin, "n-bob-end"),
	}

	do("alice", http.MethodPost, "/api/v1/networks", network("n-alice", 1), http.StatusCreated)
	do("bob", http.MethodPost, "/api/v1/networks", network("n-bob", 2), http.StatusCreated)
	do("alice", http.MethodPost, "/api/v1/networks", network("n-tmp", 3), http.StatusCreated)
	do("alice", http.MethodDelete, "/api/v1/networks/n-tmp", "", http.StatusNoContent)
	do("admin", http.MethodPost, "/api/v1/configs/web/shares", `{"with":"alice","level":"read"}`, http.StatusOK)
	do("admin", http.MethodPost, "/api/v1/configs/web/lease", `{"storage":"30d"}`, http.StatusOK)
	do("admin", http.MethodPost, "/api/v1/networks", network("n-sys", 6), http.StatusCreated)
	do("alice", http.MethodPost, "/api/v1/networks", network("n-alice-end", 4), http.StatusCreated)
	do("bob", http.MethodPost, "/api/v1/networks", network("n-bob-end", 5), http.StatusCreated)
	followed := map[string][]string{}
	for who, ch := range streams {
		select {
		case es := <-ch:
			followed[who] = eventSubjects(es)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s's stream: no n-*-end event", who)
		}
	}

	list := func(who string) []string {
		t.Helper()
		status, _, b := sendAs(t, srv, http.MethodGet, "/api/v1/events?limit=1000", "", bearer(tokens[who]))
		var es []wire.Event
		if status != http.StatusOK || json.Unmarshal([]byte(b), &es) != nil {
			t.Fatalf("%s lists events: %d %s", who, status, b)
		}
		return eventSubjects(es)
	}
	if got := list("alice"); !slices.Contains(got, "admin create network/n-sys") {
		t.Errorf("alice does not read the event of n-sys, in w1: %q", got)
	}
	if !slices.Contains(followed["alice"], "admin create network/n-sys") {
		t.Errorf("alice's stream lacks the event of n-sys, made in w1 after she began to follow: %q", followed["alice"])
	}
	do("admin", http.MethodDelete, "/api/v1/networks/n-sys", "", http.StatusNoContent)

	listed := map[string][]string{"alice": list("alice"), "bob": list("bob"), "admin": list("admin")}
	want := map[string][]string{
		"alice": {"alice create network/n-alice", "alice create network/n-tmp", "alice delete network/n-tmp",
			"admin share config/web", "admin lease config/web", "alice create network/n-alice-end"},
		"bob": {"bob create network/n-bob", "bob create network/n-bob-end"},
	}
	for _, who := range []string{"alice", "bob"} {
		for what, got := range map[string][]string{"list": listed[who], "follow": followed[who]} {
			for _, w := range want[who] {
				if !slices.Contains(got, w) {
					t.Errorf("%s's %s lacks %q: %q", who, what, w, got)
				}
			}
			for _, e := range got {
				if what == "follow" && e == "admin create network/n-sys" {
					continue // followed while n-sys existed; the list, read after its deletion, must not hold it
				}
				if !slices.Contains(want[who], e) && !strings.HasSuffix(e, "config/web") {
					t.Errorf("%s's %s holds %q, not theirs to read: %q", who, what, e, got)
				}
				if who == "bob" && strings.HasSuffix(e, "config/web") {
					t.Errorf("bob's %s holds %q of web, which is not shared with him", what, e)
				}
			}
		}
	}
	if !slices.Contains(listed["alice"], "anonymous create config/web") {
		t.Errorf("alice, with web shared, does not read its creation: %q", listed["alice"])
	}
	for _, w := range append(append(want["alice"], want["bob"]...), "admin create network/n-sys", "admin delete network/n-sys", "anonymous create network/lan") {
		if !slices.Contains(listed["admin"], w) {
			t.Errorf("the system administrator's list lacks %q", w)
		}
	}
	for _, w := range append(want["alice"], want["bob"]...) {
		if !slices.Contains(followed["admin"], w) {
			t.Errorf("the system administrator's stream lacks %q", w)
		}
	}
}

// TestDirectoryEventsAreFollowed: the directory's changes (a user, a
// workspace and its member, a token, a share; identity.go) reach the live
// stream as they commit, with the ids, actors and details the list shows,
// so `events --follow` and `events` agree; a refused change shows in
// neither.
func TestDirectoryEventsAreFollowed(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	admin := l.AdminToken(t)
	stream := follow(t, srv.URL, admin, "end")
	do := func(method, path, body string, want int) {
		t.Helper()
		hdr := map[string]string{"Authorization": "Bearer " + admin, "Content-Type": "application/json"}
		if status, _, b := sendAs(t, srv, method, path, body, hdr); status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
		}
	}
	do(http.MethodPost, "/api/v1/users", `{"name":"dora"}`, http.StatusCreated)
	do(http.MethodPost, "/api/v1/users", `{"name":"dora"}`, http.StatusConflict) // refused: no event
	do(http.MethodPost, "/api/v1/workspaces", `{"name":"lab-ws"}`, http.StatusCreated)
	do(http.MethodPost, "/api/v1/workspaces/default/lab-ws/members", `{"user":"dora","role":"author"}`, http.StatusNoContent)
	do(http.MethodPost, "/api/v1/tokens", `{"name":"ci","user":"dora"}`, http.StatusCreated)
	do(http.MethodPost, "/api/v1/users", `{"name":"carol"}`, http.StatusCreated)
	do(http.MethodPost, "/api/v1/configs/web/shares", `{"with":"carol","level":"read"}`, http.StatusOK)
	do(http.MethodPost, "/api/v1/users", `{"name":"end"}`, http.StatusCreated)

	var followed []wire.Event
	select {
	case followed = <-stream:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not show user end")
	}
	status, _, b := sendAs(t, srv, http.MethodGet, "/api/v1/events?limit=1000", "", bearer(admin))
	var listed []wire.Event
	if status != http.StatusOK || json.Unmarshal([]byte(b), &listed) != nil {
		t.Fatalf("list events: %d %s", status, b)
	}
	// The stream replays the log from its start, then follows it: the
	// lab's seed (template, network, configuration) comes first.
	ofDirectory := func(es []wire.Event) []wire.Event {
		return slices.DeleteFunc(es, func(e wire.Event) bool { return e.Actor == "anonymous" })
	}
	directory, followed := ofDirectory(listed), ofDirectory(followed)
	if got, want := eventSubjects(directory), []string{
		"admin create user/dora", "admin create workspace/default/lab-ws", "admin add-member workspace/default/lab-ws",
		"admin create token/" + directory[min(3, len(directory)-1)].Subject, "admin create user/carol", "admin share config/web", "admin create user/end",
	}; !slices.Equal(got, want) {
		t.Fatalf("listed directory events %q, want %q", got, want)
	}
	// The stream began before the first change: it holds each of them,
	// the same event (id, time, actor, detail) as the list.
	for _, e := range directory {
		i := slices.IndexFunc(followed, func(f wire.Event) bool { return f.ID == e.ID })
		if i < 0 {
			t.Errorf("the stream lacks event %d %q", e.ID, eventSubjects([]wire.Event{e}))
			continue
		}
		if f := followed[i]; !f.At.Equal(e.At) || f.Actor != e.Actor || f.Action != e.Action || f.Subject != e.Subject || f.Detail != e.Detail || f.Result != e.Result {
			t.Errorf("followed %+v, listed %+v", f, e)
		}
	}
	if len(followed) != len(directory) {
		t.Errorf("followed %q, listed %q", eventSubjects(followed), eventSubjects(directory))
	}
}
