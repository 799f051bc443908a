package auth

import (
	"sync"
	"time"
)

// Login throttle settings: ThrottleFailures failed logins within
// ThrottleWindow lock the (user, address) pair for ThrottleBaseDelay, each
// further failure doubles the lock, up to ThrottleMaxDelay. The pair is
// forgotten ThrottleWindow after its lock ends with no new failure, or at
// a successful login.
const (
	ThrottleFailures  = 5
	ThrottleWindow    = 5 * time.Minute
	ThrottleBaseDelay = 30 * time.Second
	ThrottleMaxDelay  = 15 * time.Minute
	throttleMaxKeys   = 100_000
)

// Throttle limits password guessing per (user name, remote address). It
// keys on the pair, not the user alone, so nobody can lock a user out from
// elsewhere by failing on purpose; an attacker spreading guesses over many
// addresses is slowed by the cost of argon2id instead. It lives in memory:
// a daemon restart forgets it, which costs an attacker a restart they
// cannot cause. Safe for concurrent use.
type Throttle struct {
	now func() time.Time

	mu        sync.Mutex
	entries   map[throttleKey]*throttleEntry
	lastSweep time.Time
}

type throttleKey struct{ user, addr string }

type throttleEntry struct {
	fails       []time.Time // failures within the window, while not yet locked
	strikes     int         // failures since the lock began (1 at the lock)
	lockedUntil time.Time
}

// NewThrottle returns an empty throttle reading the time from now
// (time.Now when nil; tests pass a fake clock).
func NewThrottle(now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{now: now, entries: map[throttleKey]*throttleEntry{}}
}

// Check returns 0 when user may try a password from addr now, else how
// long until they may (for Retry-After). Call it before checking the
// password, so a locked pair costs no argon2id. addr is the remote IP
// without its port; user is the name as typed, normalised by the caller.
func (t *Throttle) Check(user, addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entry(user, addr, now, false)
	if e == nil || !now.Before(e.lockedUntil) {
		return 0
	}
	return e.lockedUntil.Sub(now)
}

// Fail records a failed login and returns the wait it imposes (0 while
// under ThrottleFailures in the window).
func (t *Throttle) Fail(user, addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.sweep(now)
	e := t.entry(user, addr, now, true)
	if e.strikes == 0 {
		kept := e.fails[:0]
		for _, f := range e.fails {
			if now.Sub(f) < ThrottleWindow {
				kept = append(kept, f)
			}
		}
		e.fails = append(kept, now)
		if len(e.fails) < ThrottleFailures {
			return 0
		}
		e.fails = nil
	}
	e.strikes++
	delay := ThrottleMaxDelay
	if shift := e.strikes - 1; shift < 16 { // 30 s << 5 already passes the cap
		delay = min(ThrottleBaseDelay<<shift, ThrottleMaxDelay)
	}
	e.lockedUntil = now.Add(delay)
	return delay
}

// Succeed forgets the pair: whoever knows the password needs no brake.
func (t *Throttle) Succeed(user, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, throttleKey{user, addr})
}

// entry returns the pair's state, dropping it first if it has expired;
// with create, a missing entry is made.
func (t *Throttle) entry(user, addr string, now time.Time, create bool) *throttleEntry {
	k := throttleKey{user, addr}
	e := t.entries[k]
	if e != nil && expired(e, now) {
		delete(t.entries, k)
		e = nil
	}
	if e == nil && create {
		if len(t.entries) >= throttleMaxKeys {
			// Full even after the sweep: drop an arbitrary pair rather than
			// grow without bound or stop counting new ones.
			for old := range t.entries {
				delete(t.entries, old)
				break
			}
		}
		e = &throttleEntry{}
		t.entries[k] = e
	}
	return e
}

func expired(e *throttleEntry, now time.Time) bool {
	if e.strikes > 0 {
		return !now.Before(e.lockedUntil.Add(ThrottleWindow))
	}
	return len(e.fails) == 0 || now.Sub(e.fails[len(e.fails)-1]) >= ThrottleWindow
}

// sweep drops expired pairs at most once a window, so memory follows the
// recent failures only.
func (t *Throttle) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < ThrottleWindow {
		return
	}
	t.lastSweep = now
	for k, e := range t.entries {
		if expired(e, now) {
			delete(t.entries, k)
		}
	}
}

// size is the number of pairs held, for tests.
func (t *Throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
