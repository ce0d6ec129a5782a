package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// schemaVersion is the version of the JSON document copy, plan and sync print, described
// in docs/CLI-JSON.md. A field that changes meaning or goes away changes it; a new field
// does not.
const schemaVersion = 1

// document is the one JSON shape of copy, copy --dry-run, plan and sync (and sync
// --dry-run): the same names for the same things, fields only where they apply.
type document struct {
	SchemaVersion int    `json:"schemaVersion"`
	Command       string `json:"command"`
	DryRun        bool   `json:"dryRun"`
	// Complete: everything in scope could be looked at (false: see destinations and
	// problems); a run with failed copies is complete, its failures are items.
	Complete     bool                 `json:"complete"`
	Counted      string               `json:"counted"`
	Totals       totals               `json:"totals"`
	Estimate     *estimate            `json:"estimate,omitempty"`     // dry runs
	Repositories []repositoryPlan     `json:"repositories,omitempty"` // dry runs
	Destinations []*destinationStatus `json:"destinations,omitempty"` // plan and sync
	Items        []item               `json:"items"`
	Mounting     []mountingJSON       `json:"mounting,omitempty"` // plan, sync --dry-run
	Problems     []problemJSON        `json:"problems,omitempty"`
	Warnings     []string             `json:"warnings,omitempty"`
}

// errorDocument is what a command that failed as a whole prints with --output json.
type errorDocument struct {
	SchemaVersion int            `json:"schemaVersion"`
	Command       string         `json:"command,omitempty"`
	Error         map[string]any `json:"error"`
	Warnings      []string       `json:"warnings,omitempty"`
}

// totals count copies: one per tag (or untagged image, or image named by digest) and
// destination repository.
type totals struct {
	Repositories int    `json:"repositories"` // source repositories looked at
	Images       int    `json:"images"`       // source images (digests) looked at
	Copies       int    `json:"copies"`       // inSync + toCopy + notPlanned + cannotCopy
	InSync       int    `json:"inSync"`
	ToCopy       int    `json:"toCopy"`
	NotPlanned   int    `json:"notPlanned,omitempty"` // the destination could not be listed
	CannotCopy   int    `json:"cannotCopy,omitempty"` // dry runs: copies that would fail (conflict, no repository)
	Copied       *int   `json:"copied,omitempty"`     // runs: copies that wrote
	Failed       int    `json:"failed"`               // copies (or lookups) that failed
	Held         int    `json:"held,omitempty"`       // copies a promotion gate holds (docs/PROMOTION.md)
	Blocked      int    `json:"blocked,omitempty"`    // copies a promotion gate blocks
	BytesCopied  *int64 `json:"bytesCopied,omitempty"`
	DurationMs   int64  `json:"durationMs"`
}

// estimate is how long the copies to make take, by manifest writes and (plan, sync) by
// bytes; the larger decides.
type estimate struct {
	ManifestWrites    int     `json:"manifestWrites"`
	PutImagePerSecond float64 `json:"putImagePerSecond"`
	WriteSeconds      float64 `json:"writeSeconds"`
	// BytesToUpload sums the to-copy items' sizeBytes (docs/CLI-JSON.md says what they count).
	BytesToUpload         *int64   `json:"bytesToUpload,omitempty"`
	AssumedBytesPerSecond *int64   `json:"assumedBytesPerSecond,omitempty"`
	BytesSeconds          *float64 `json:"bytesSeconds,omitempty"`
	Seconds               float64  `json:"seconds"`
}

// repositoryPlan is a dry run's totals for one source and destination repository.
type repositoryPlan struct {
	Source           string `json:"source"`
	Destination      string `json:"destination"`
	InSync           int    `json:"inSync"`
	ToCopy           int    `json:"toCopy"`
	CannotCopy       int    `json:"cannotCopy,omitempty"` // copies that would fail (conflict, no repository)
	BytesToUpload    *int64 `json:"bytesToUpload,omitempty"`
	CreateRepository bool   `json:"createRepository"`
}

// item is one copy: looked up (dry runs) or made (runs).
type item struct {
	Source      string     `json:"source"`      // repository: host/name
	Destination string     `json:"destination"` // repository: host/name
	Tag         string     `json:"tag,omitempty"`
	Digest      string     `json:"digest,omitempty"`
	State       string     `json:"state"`
	Reason      string     `json:"reason,omitempty"`
	SizeBytes   *int64     `json:"sizeBytes,omitempty"`   // plan and sync dry runs
	BytesCopied *int64     `json:"bytesCopied,omitempty"` // runs
	Error       *errorJSON `json:"error,omitempty"`
}

// errorJSON is a failure: its code, and one line saying what went wrong and what to do
// (the full error chain only with --debug).
type errorJSON struct {
	Code      string `json:"code,omitempty"`
	Message   string `json:"message"`
	Operation string `json:"operation,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// problemJSON is a failure not tied to a copy: a source repository that could not be
// read, a destination name the rules make invalid.
type problemJSON struct {
	Repository string `json:"repository,omitempty"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message"`
}

// Item states besides the engine's outcomes (copied, already-present, tag-updated,
// skipped, conflict, too-large-for-function, failed).
const (
	stateInSync   = "in-sync"
	stateToCopy   = "to-copy"
	stateFailed   = "failed"
	stateConflict = string(destinations.Conflict) // a dry run's copy an immutable tag refuses
	// A promotion gate's: not copied (yet, or at all); the reason says why.
	stateHeld    = "held"
	stateBlocked = "blocked"
)

// newDocument starts a's document for the command.
func newDocument(a *app, dryRun bool, counted string) *document {
	return &document{SchemaVersion: schemaVersion, Command: a.command, DryRun: dryRun, Complete: true, Counted: counted, Items: []item{}}
}

// write prints the document, with the warnings said so far.
func (d *document) write(a *app) error {
	d.Warnings = a.warnings
	return writeJSONTo(a.stdout, d)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// registryHost is the host name of an ECR registry
// (https://docs.aws.amazon.com/general/latest/gr/ecr.html): the JSON names every
// repository by host, as copy takes them. China regions are under amazonaws.com.cn.
func registryHost(r ecrname.Registry) string {
	suffix := ".amazonaws.com"
	if strings.HasPrefix(r.Region, "cn-") {
		suffix += ".cn"
	}
	return r.AccountID + ".dkr.ecr." + r.Region + suffix
}

// repoRef is a repository named by its registry host.
func repoRef(r ecrname.Repo) string { return registryHost(r.Registry) + "/" + r.Name }

func ptr[T any](v T) *T { return &v }

// Estimates: ECR's default PutImage rate, and the transfer rate bytes are estimated at —
// an assumption (a fast link to ECR; docs/CLI-JSON.md), said wherever an estimate is shown.
const (
	putImageQuota         = backfill.PutImageQuota
	assumedBytesPerSecond = 100 << 20
)

// newEstimate is the time writes manifest writes (writeSeconds at the busiest
// destination's quota) and bytes (when known, <0: unknown) take; the larger decides.
func newEstimate(writes int, writeSeconds float64, bytes int64) *estimate {
	writeSeconds = ms(writeSeconds)
	e := &estimate{ManifestWrites: writes, PutImagePerSecond: putImageQuota, WriteSeconds: writeSeconds, Seconds: writeSeconds}
	if bytes >= 0 {
		secs := ms(float64(bytes) / assumedBytesPerSecond)
		e.BytesToUpload, e.AssumedBytesPerSecond, e.BytesSeconds = ptr(bytes), ptr(int64(assumedBytesPerSecond)), ptr(secs)
		e.Seconds = max(e.Seconds, secs)
	}
	return e
}

// ms rounds seconds to milliseconds: an estimate has no more precision.
func ms(secs float64) float64 { return math.Round(secs*1000) / 1000 }

// text is the estimate in a sentence: "36 B of layers and 4 manifest writes: under a
// second (36 B at an assumed 100 MiB/s: under a second; 4 writes at ECR's default 10
// PutImage/s: under a second)".
func (e *estimate) text() string {
	writes := fmt.Sprintf("%s at ECR's default %g PutImage/s: %s", plural(e.ManifestWrites, "writes"), e.PutImagePerSecond, roughly(e.WriteSeconds))
	if e.BytesToUpload == nil {
		return fmt.Sprintf("%s: %s", plural(e.ManifestWrites, "manifest writes"), writes)
	}
	b := humanBytes(*e.BytesToUpload)
	return fmt.Sprintf("%s of layers and %s: %s (%s at an assumed %d MiB/s: %s; %s)", b, plural(e.ManifestWrites, "manifest writes"),
		roughly(e.Seconds), b, *e.AssumedBytesPerSecond>>20, roughly(*e.BytesSeconds), writes)
}

// roughly is a duration in seconds as a person says it: "under a second", "about 2m10s".
func roughly(secs float64) string {
	if secs < 1 {
		return "under a second"
	}
	return "about " + time.Duration(secs*float64(time.Second)).Round(time.Second).String()
}

// paint is an outcome or state padded to its column, coloured when a.colour(): writes in
// green, failures in red, copies to make in yellow.
func paint(a *app, state string) string {
	s := fmt.Sprintf("%-15s", state)
	if !a.colour() {
		return s
	}
	code := ""
	switch state {
	case "copied", "tag-updated":
		code = "32"
	case "failed", "conflict", "too-large-for-function":
		code = "31"
	case stateToCopy:
		code = "33"
	default:
		return s
	}
	return "\x1b[" + code + "m" + state + "\x1b[0m" + s[len(state):]
}
