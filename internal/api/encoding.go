package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// maxBody bounds request bodies; the largest legitimate one is a
// configuration with a few hundred VMs.
const maxBody = 1 << 20

// decode reads exactly one JSON value of v's shape from the body. Unknown
// fields, trailing data and oversized bodies are invalid requests.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBody(w, r, v, false)
}

// decodeOptional is decode for bodies whose every field has a default: an
// empty body leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBody(w, r, v, true)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF) && optional:
			return nil
		case errors.Is(err, io.EOF):
			return errMalformed("request body is empty, want a JSON object")
		case errors.As(err, &tooBig):
			return errMalformed("request body is larger than %d bytes", tooBig.Limit)
		default:
			return errMalformed("request body: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errMalformed("request body: unexpected data after the JSON object")
	}
	return nil
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// pathIndex parses the path parameter key as a disk or NIC index.
func pathIndex(r *http.Request, key string) (int, error) {
	s := r.PathValue(key)
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errMalformed("%s %q is not an index (0, 1, ...)", key, s)
	}
	return n, nil
}

// queryBool parses the optional query parameter key: 1, true, 0, false or
// absent (false).
func queryBool(r *http.Request, key string) (bool, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, errMalformed("%s %q is not 1, true, 0 or false", key, s)
	}
	return b, nil
}

// writeList answers 200 with items converted to their wire form, as a JSON
// array ([] when empty, never null).
func writeList[T, W any](w http.ResponseWriter, items []T, toWire func(*T) W) error {
	out := make([]W, 0, len(items))
	for i := range items {
		out = append(out, toWire(&items[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}
