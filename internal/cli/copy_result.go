package cli

import (
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// imageResult is what copying one item did.
type imageResult struct {
	Source      string // repository, as named (host/name)
	Destination string
	Tag         string
	Digest      string
	Outcome     string
	Reason      string
	Code        string
	Message     string // what went wrong and what to do, in one line
	Err         error  // the full error, for --debug
	BytesCopied int64
}

func (r imageResult) failed() bool {
	return destinations.Outcome(r.Outcome).Failure()
}

// ref is the destination reference of the result: repository, tag, digest (when known).
func (r imageResult) ref() string {
	s := r.Destination
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + shortDigest(r.Digest)
	}
	return s
}

// line is the result as copy and sync print it: the outcome, the destination reference,
// and what went wrong or why.
func (r imageResult) line(a *app) string {
	line := paint(a, r.Outcome) + " " + r.ref()
	switch {
	case r.Message != "":
		line += ": " + r.Message
	case r.Reason != "":
		line += " (" + r.Reason + ")"
	}
	return line
}

// item is the result in the JSON document.
func (r imageResult) item(debug bool) item {
	it := item{Source: r.Source, Destination: r.Destination, Tag: r.Tag, Digest: r.Digest, State: r.Outcome, BytesCopied: ptr(r.BytesCopied)}
	if r.Message != "" {
		it.Error = &errorJSON{Code: r.Code, Message: r.Message}
		if debug && r.Err != nil {
			it.Error.Detail = detail(r.Err)
		}
	} else {
		it.Reason = r.Reason
	}
	return it
}

// reportCopy prints the summary (text: the result lines were printed as they came) or the
// JSON document, and returns exitError{ExitFailed} when any item failed. created says the
// run created the destination repository.
func reportCopy(a *app, unit string, results []imageResult, start time.Time, created bool) error {
	failed, copied, inSync := 0, 0, 0
	counts := map[string]int{}
	var bytes int64
	digests := map[string]bool{}
	for _, r := range results {
		counts[r.Outcome]++
		bytes += r.BytesCopied
		if r.Digest != "" {
			digests[r.Digest] = true
		}
		switch destinations.Outcome(r.Outcome) {
		case destinations.Copied, destinations.TagUpdated:
			copied++
		case destinations.AlreadyPresent, destinations.Skipped:
			inSync++
		default:
			failed++
		}
	}
	if created && copied == 0 && len(results) > 0 {
		warnCreatedEmpty(a, results)
	}
	if a.json() {
		doc := newDocument(a, false, countedCopy(unit))
		doc.Totals = totals{Repositories: 1, Images: len(digests), Copies: len(results), InSync: inSync, ToCopy: len(results) - inSync,
			Copied: ptr(copied), Failed: failed, BytesCopied: ptr(bytes), DurationMs: time.Since(start).Milliseconds()}
		for _, r := range results {
			doc.Items = append(doc.Items, r.item(a.debug))
		}
		if err := doc.write(a); err != nil {
			return err
		}
	} else {
		if len(results) == 0 {
			fmt.Fprintf(a.stdout, "0 %s: nothing to copy\n", unit)
		} else {
			fmt.Fprintf(a.stdout, "%s: %s; %s copied\n", plural(len(results), unit), summarize(counts), humanBytes(bytes))
		}
	}
	if failed > 0 {
		return exitError{ExitFailed}
	}
	return nil
}

// warnCreatedEmpty says that the destination repository the run created is still empty,
// and what fills it: a rerun, when some copy failed in a way another run may not (a
// registry that did not answer, throttling); otherwise the failures must be fixed first.
func warnCreatedEmpty(a *app, results []imageResult) {
	retryable := false
	for _, r := range results {
		if _, ok := retry.Classify(r.Err); ok {
			retryable = true
		}
	}
	if retryable {
		a.warn("repository %s was created and is still empty: rerun to fill it, or delete it", results[0].Destination)
		return
	}
	a.warn("repository %s was created and is still empty: its copies failed in a way a rerun does not change; fix the failure above and rerun, or delete it", results[0].Destination)
}

// countedCopy says what copy's items count.
func countedCopy(unit string) string {
	if unit == "images" {
		return "copies: the image named by digest, to the destination repository"
	}
	return "copies: one per tag, to the destination repository"
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
