package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestThrottle(t *testing.T) {
	type step struct {
		advance time.Duration
		op      string        // "fail", "ok", "check"
		who     string        // "bob@1" by default
		want    time.Duration // Fail's returned delay, or Check's wait
	}
	fail := func(adv, want time.Duration) step { return step{adv, "fail", "", want} }
	check := func(adv, want time.Duration) step { return step{adv, "check", "", want} }
	four := []step{fail(0, 0), fail(time.Second, 0), fail(time.Second, 0), fail(time.Second, 0)}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"four failures are free", append(four, check(0, 0))},
		{"the fifth locks for 30 s", append(four, fail(time.Second, 30*time.Second), check(10*time.Second, 20*time.Second), check(20*time.Second, 0))},
		{"each later failure doubles", append(four,
			fail(0, 30*time.Second), fail(30*time.Second, time.Minute), fail(time.Minute, 2*time.Minute),
			fail(2*time.Minute, 4*time.Minute), fail(4*time.Minute, 8*time.Minute), fail(8*time.Minute, 15*time.Minute),
			fail(15*time.Minute, 15*time.Minute), check(time.Minute, 14*time.Minute))},
		{"failures spread over more than the window never lock", []step{
			fail(0, 0), fail(2*time.Minute, 0), fail(2*time.Minute, 0), fail(2*time.Minute, 0),
			fail(2*time.Minute, 0), fail(2*time.Minute, 0), fail(2*time.Minute, 0), check(0, 0)}},
		{"the window slides: the first failure ages out", []step{
			fail(0, 0), fail(4*time.Minute, 0), fail(time.Second, 0), fail(time.Second, 0),
			fail(time.Minute, 0), fail(time.Second, 30*time.Second)}},
		{"a lock is not forgotten when it ends", append(four,
			fail(0, 30*time.Second), fail(31*time.Second, time.Minute), // the next failure after the lock still doubles
		)},
		{"forgotten a window after the lock ends", append(four,
			fail(0, 30*time.Second), fail(30*time.Second+ThrottleWindow, 0))},
		{"success forgets", append(four, fail(0, 30*time.Second),
			step{30 * time.Second, "ok", "", 0}, fail(0, 0), check(0, 0))},
		{"other pairs are not locked", append(four, fail(0, 30*time.Second),
			step{0, "check", "bob@2", 0}, step{0, "check", "eve@1", 0}, step{0, "fail", "eve@1", 0}, check(0, 30*time.Second))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			th := NewThrottle(clock.now)
			for i, s := range tc.steps {
				clock.advance(s.advance)
				user, addr := "bob", "1"
				if s.who != "" {
					fmt.Sscanf(s.who, "%3s@%s", &user, &addr)
				}
				var got time.Duration
				switch s.op {
				case "fail":
					got = th.Fail(user, addr)
				case "check":
					got = th.Check(user, addr)
				case "ok":
					th.Succeed(user, addr)
				}
				if got != s.want {
					t.Fatalf("step %d (%s %s@%s after %v): %v, want %v", i, s.op, user, addr, s.advance, got, s.want)
				}
			}
		})
	}
}

func TestThrottleForgets(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	th := NewThrottle(clock.now)
	for i := range 1000 {
		th.Fail("u", fmt.Sprint(i))
	}
	if th.size() != 1000 {
		t.Fatalf("%d pairs, want 1000", th.size())
	}
	clock.advance(ThrottleWindow)
	th.Fail("u", "new")
	if th.size() != 1 {
		t.Fatalf("%d pairs a window later, want the new one only", th.size())
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th := NewThrottle(nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				th.Check("bob", "1")
				th.Fail("bob", "1")
			}
		})
	}
	wg.Wait()
	if th.Check("bob", "1") == 0 {
		t.Fatal("800 failures did not lock")
	}
}
