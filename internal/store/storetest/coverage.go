package storetest

import (
	"context"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"stagehand/internal/store"
)

// Every method of store.Store and of each of store.Tx's accessors (named
// "Templates.Get") has a case that tests it. Each
// case of Run names the methods it covers; MethodCoverage fails when a
// method is named by no case (a method added to the interface without a
// conformance case), or a name is not a method. A case's store records the
// methods the case calls, and a case that finishes fails when it did not
// call a method it claims, so a claim cannot outlive the code that made it.

//go:generate go run gen_recorder.go

// recorder notes the store methods one case calls.
type recorder struct {
	mu    sync.Mutex
	calls map[string]bool
}

func newRecorder() *recorder { return &recorder{calls: map[string]bool{}} }

func (r *recorder) called(method string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.calls[method] = true
	r.mu.Unlock()
}

// checkCalled fails t unless the case called every method it covers.
func (r *recorder) checkCalled(t *testing.T, covers []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range covers {
		if !r.calls[m] {
			t.Errorf("the case claims to cover %s but never called it", m)
		}
	}
}

// recordingStore passes a recordingTx to the functions given to Update
// and View.
type recordingStore struct {
	store.Store
	rec *recorder
}

func (s recordingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	s.rec.called("Update")
	return s.Store.Update(ctx, func(tx store.Tx) error { return fn(recordingTx{Tx: tx, rec: s.rec}) })
}

func (s recordingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	s.rec.called("View")
	return s.Store.View(ctx, func(tx store.Tx) error { return fn(recordingTx{Tx: tx, rec: s.rec}) })
}

func (s recordingStore) Close() error {
	s.rec.called("Close")
	return s.Store.Close()
}

// recordingTx returns from each accessor a wrapper (recorder_gen.go) that
// notes each call of a method of the accessor's interface; a method or
// accessor it does not wrap (one added to store.Tx since the file was
// generated) reaches the embedded Tx unrecorded.
type recordingTx struct {
	store.Tx
	rec *recorder
}

// interfaceMethods returns the method names of store.Store and those of
// the interface of each accessor of store.Tx, as "Accessor.Method".
func interfaceMethods() []string {
	var names []string
	st := reflect.TypeFor[store.Store]()
	for i := range st.NumMethod() {
		names = append(names, st.Method(i).Name)
	}
	tx := reflect.TypeFor[store.Tx]()
	for i := range tx.NumMethod() {
		acc := tx.Method(i)
		iface := acc.Type.Out(0)
		for j := range iface.NumMethod() {
			names = append(names, acc.Name+"."+iface.Method(j).Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// testMethodCoverage fails for every method of the interfaces that no
// case covers, and for every covered name that is not a method.
func testMethodCoverage(t *testing.T, cases []suiteCase) {
	methods := interfaceMethods()
	coveredBy := map[string][]string{}
	for _, c := range cases {
		for _, m := range c.covers {
			coveredBy[m] = append(coveredBy[m], c.name)
		}
	}
	var missing []string
	for _, m := range methods {
		if len(coveredBy[m]) == 0 {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d store methods have no conformance case: %s\n"+
			"write a case that tests each (round trip, error kinds, ordering) and name it in the case's covers; "+
			"run go generate ./internal/store/storetest so that the suite records its calls",
			len(missing), len(methods), strings.Join(missing, ", "))
	}
	var unknown []string
	for m := range coveredBy {
		if !slices.Contains(methods, m) {
			unknown = append(unknown, m+" (in "+strings.Join(coveredBy[m], ", ")+")")
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("cases cover names that are not store methods: %s", strings.Join(unknown, "; "))
	}
	t.Logf("%d store methods, %d cases", len(methods), len(cases))
}
