package webui

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/lab/access"
)

// Action is one operation a page offers: a button (data-action=Name) that
// opens a confirmation dialog with the action's fields and its equivalent
// CLI line, which on confirm sends Method Path to the API with the fields
// as a JSON body (app.js). The API decides and answers as it does for the
// CLI: its one-line error appears next to the action; a 202 with a job
// shows the job's progress until it ends.
type Action struct {
	Name   string // data-action, "kind.verb": config.clone
	Label  string // the button's text
	Method string
	Path   string // the API path, /api/v1/…
	// CLI is the command line the action is, with {field} placeholders
	// filled from the fields as the user types; the fields' Flags follow.
	CLI     string
	Fields  []Field
	Confirm string // what the dialog asks
	Danger  bool   // a destructive action: drawn as one
	// Then is where the browser goes on success, {field} placeholders
	// filled; "" reloads the page.
	Then string
	// Key tells apart the dialogs of one action offered on several
	// objects of a page (a cancel per job): its dialog's id.
	Key string
	// Upload sends files rather than JSON: UploadMultipart (each file a
	// part named by its field's Part), UploadRaw (the one file is the
	// body). The other fields go in the query; app.js sends each file's
	// SHA-256 (wire.HeaderContentSHA256) and shows the upload's progress.
	Upload string
	// Show names a field of the API's answer the dialog shows once
	// instead of going on (a new token's secret).
	Show string
	// Ask makes the action a question (auth explain): its form stands in
	// the page rather than behind a button, and shows each field of the
	// API's answer below it, ready to be asked again.
	Ask bool
}

// Upload modes of an action (Action.Upload).
const (
	UploadMultipart = "multipart"
	UploadRaw       = "raw"
)

// Field kinds.
const (
	FieldText   = "text"
	FieldSelect = "select"
	FieldBool   = "bool"
	// FieldHidden is sent with the body, not shown.
	FieldHidden = "hidden"
	// FieldConfirm must be typed equal to Value before the action is
	// sent (the name of what a delete destroys); it is not sent.
	FieldConfirm = "confirm"
	// FieldNumber is sent as a JSON number.
	FieldNumber = "number"
	// FieldPassword is a text typed unseen; it never appears in the CLI
	// line.
	FieldPassword = "password"
	// FieldFile picks files on the user's machine for an upload (Part
	// names their multipart part; Multiple allows several, sent in the
	// order picked).
	FieldFile = "file"
)

// Field is one input of an action's dialog.
type Field struct {
	// Name is the JSON body's key; a dotted path with [i] indexes makes
	// nested values ("vms[0].name").
	Name     string
	Label    string
	Kind     string // Field*; "" is FieldText
	Options  []string
	Value    string // the initial value (FieldConfirm: the text to type)
	Required bool
	Help     string
	// Flag is the CLI flag the field adds: "--mode" adds "--mode VALUE"
	// when the value is not empty; a bool adds the flag alone when
	// checked, FlagOff when not. A field without a flag appears only
	// where CLI names it.
	Flag    string
	FlagOff string
	// Requires names a bool field: this field is sent (and shown in the
	// CLI line) only while that one is checked (a fence policy only with
	// a fenced deploy).
	Requires string
	// Part is a file field's multipart part (wire.PartDisk, …).
	Part     string
	Multiple bool
}

// DialogID is the id of the action's dialog element.
func (a Action) DialogID() string {
	id := "dlg-" + strings.NewReplacer(".", "-", "/", "-").Replace(a.Name)
	if a.Key != "" {
		// Keys are object names: any character, so the id takes a hash
		// of the key, kept readable by the key's safe characters.
		h := fnv.New32a()
		h.Write([]byte(a.Key))
		safe := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '_'
		}, a.Key)
		id += fmt.Sprintf("--%s-%08x", safe, h.Sum32())
	}
	return id
}

// offers builds the actions a page shows: each one only if the caller may
// do it. The first error the checker could not decide stops the page
// (err), rather than hiding an action silently.
type offers struct {
	ctx  context.Context
	lab  Lab
	list []Action
	err  error
}

func (v *view) offers(ctx context.Context) *offers { return &offers{ctx: ctx, lab: v.lab} }

// add offers a when the caller may do perm on obj.
func (o *offers) add(perm auth.Action, obj access.Ref, a Action) {
	if o.err != nil {
		return
	}
	ok, err := o.lab.allowed(o.ctx, perm, obj)
	if err != nil {
		o.err = err
		return
	}
	if ok {
		o.list = append(o.list, a)
	}
}

// result returns the actions offered.
func (o *offers) result() ([]Action, error) { return o.list, o.err }

// shellQuote quotes s for a POSIX shell when it needs it, so that a CLI
// line can be pasted as shown.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@=,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
