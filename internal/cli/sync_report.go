package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// destinationStatus is one destination (account, region, and the role reaching it) in
// a plan or sync report.
type destinationStatus struct {
	Registry     string     `json:"registry"` // host name
	Account      string     `json:"account"`
	Region       string     `json:"region"`
	RoleARN      string     `json:"roleArn,omitempty"`
	Rules        string     `json:"rules,omitempty"` // where the rules name it first: rules[i].destinations[j]
	Listed       bool       `json:"listed"`
	Repositories int        `json:"repositoriesNotListed,omitempty"`
	Error        *errorJSON `json:"error,omitempty"`
	msg          string
	roleFailed   bool // msg is about the role itself, and names it
	access       ecraccess.Access
}

func (d *destinationStatus) name() string { return d.Account + "/" + d.Region }

// destinationStatuses combines the checks made before planning with the listing
// failures of the plan (mapped to their destination through the rules), one status per
// destination. caller is the account of the identity listing without a role.
func destinationStatuses(doc *rules.Document, caller string, checks []*destinationCheck, failures []backfill.Failure) []*destinationStatus {
	byAccess := map[ecraccess.Access]*destinationStatus{}
	var out []*destinationStatus
	status := func(a ecraccess.Access) *destinationStatus {
		s := byAccess[a]
		if s == nil {
			s = &destinationStatus{Registry: registryHost(ecrname.Registry{AccountID: a.AccountID, Region: a.Region}), Account: a.AccountID, Region: a.Region,
				RoleARN: a.RoleARN, Listed: true, access: a}
			byAccess[a] = s
			out = append(out, s)
		}
		return s
	}
	for _, c := range checks {
		s := status(c.access)
		s.Rules = c.path
		if c.prob != nil {
			s.Listed, s.msg, s.roleFailed = false, c.prob.msg, true
			s.Error = &errorJSON{Code: c.prob.code, Message: c.prob.msg, Operation: c.prob.op}
		}
	}
	for _, f := range failures {
		if f.Destination == "" || f.Digest != "" {
			continue // a source listing failure, or a failed copy
		}
		var a ecraccess.Access
		for _, t := range doc.RepositoryTargets(f.Repository) {
			if t.Repo().String() == f.Destination {
				a = destinations.DestinationAccess(t.Destination)
				break
			}
		}
		if a.AccountID == "" {
			acct, rest, _ := strings.Cut(f.Destination, "/")
			region, _, _ := strings.Cut(rest, "/")
			a = ecraccess.Access{AccountID: acct, Region: region}
		}
		s := status(a)
		s.Repositories++
		if s.Listed {
			s.Listed = false
			s.msg = listingMessage(f, s, caller)
			s.Error = &errorJSON{Code: f.Code, Message: s.msg}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].name() < out[j].name() })
	return out
}

// listingMessage explains a destination listing that failed although its role (if any)
// was assumed: by its AWS code when there is one, and, for another account's registry
// listed without a role, with the fields that give it one.
func listingMessage(f backfill.Failure, s *destinationStatus, caller string) string {
	switch {
	case deniedCodes[f.Code] && s.RoleARN == "" && s.Account != caller:
		return fmt.Sprintf("listing %s was denied (%s): it is in account %s, and this identity in account %s; give %s a roleArn of account %s that account %s may assume (and its externalId)",
			f.Destination, f.Code, s.Account, caller, s.Rules, s.Account, caller)
	case deniedCodes[f.Code]:
		return fmt.Sprintf("listing %s was denied (%s): the identity needs ecr:DescribeImages and ecr:DescribeRepositories there", f.Destination, f.Code)
	case expiredCodes[f.Code]:
		return fmt.Sprintf("the credentials expired while listing %s (%s): get fresh ones and rerun", f.Destination, f.Code)
	case f.Code != "":
		return fmt.Sprintf("listing %s failed (%s)", f.Destination, f.Code)
	}
	return fmt.Sprintf("listing %s failed (no answer): rerun (--debug shows the cause)", f.Destination)
}

func unlisted(dests []*destinationStatus) int {
	n := 0
	for _, d := range dests {
		if !d.Listed {
			n++
		}
	}
	return n
}

// syncReport prints what plan and sync found and did.
type syncReport struct {
	a         *app
	o         syncOptions
	doc       *rules.Document
	source    ecrname.Registry
	deadRules int // rules that selected nothing (warned about)
}

// counts is the line every report shares: what was looked at and what the copies are
// (blocked: the plan's copies that cannot be made, which its Drift no longer counts).
func counts(r *backfill.Response, blocked int) string {
	return fmt.Sprintf("%s, %s; %s (one per tag, or untagged image, and destination)",
		plural(r.RepositoriesScanned, "repositories"), plural(r.ImagesSeen, "images"),
		plural(r.InSync+r.Drift+r.Unplanned+blocked, "copies"))
}

const countedJSON = "copies: one per tag, or untagged image, and destination repository"

// sourceProblems are the failures not tied to a destination: a source repository that
// could not be listed, a destination name the rules make invalid.
func (r *syncReport) sourceProblems(resp *backfill.Response) []problemJSON {
	var out []problemJSON
	for _, f := range resp.Failures {
		if f.Destination != "" {
			continue
		}
		p := problemJSON{Repository: f.Repository, Code: f.Code, Message: f.Reason}
		if strings.HasPrefix(f.Reason, "ecr:DescribeImages: ") || strings.HasPrefix(f.Reason, "ecr:DescribeRepositories") {
			// An AWS error chain: said by its code (--debug has the chain).
			p.Message = fmt.Sprintf("listing source repository %s failed (%s)", f.Repository, orStatus(f.Code, 0))
			if deniedCodes[f.Code] {
				p.Message += ": the identity needs ecr:DescribeImages on the source"
			}
			if r.a.debug {
				p.Message += ": " + redactSecrets(f.Reason)
			}
		}
		out = append(out, p)
	}
	return out
}

// printProblems prints one line per destination that could not be listed and per source
// problem.
func (r *syncReport) printProblems(resp *backfill.Response, dests []*destinationStatus) {
	w := r.a.stdout
	for _, d := range dests {
		if d.Listed {
			continue
		}
		what := "destination " + d.name()
		if d.RoleARN != "" && !d.roleFailed {
			what += " via " + d.RoleARN
		}
		if d.Repositories > 0 {
			what += fmt.Sprintf(" (%s not listed)", plural(d.Repositories, "repositories"))
		}
		fmt.Fprintf(w, "%s: %s\n", what, d.msg)
	}
	for _, p := range r.sourceProblems(resp) {
		if p.Repository != "" {
			fmt.Fprintf(w, "source %s: %s\n", p.Repository, p.Message)
		} else {
			fmt.Fprintf(w, "source: %s\n", p.Message)
		}
	}
}

func incompleteWhy(r *backfill.Response, dests []*destinationStatus) string {
	var parts []string
	if bad := unlisted(dests); bad > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d destinations could not be listed", bad, len(dests)))
	}
	src := 0
	for _, f := range r.Failures {
		if f.Destination == "" {
			src++
		}
	}
	if src > 0 {
		parts = append(parts, plural(src, "source problems"))
	}
	if len(parts) == 0 {
		parts = append(parts, plural(r.Failed, "failures"))
	}
	return strings.Join(parts, ", ")
}

// sync reports a sync that ran (the result lines were printed as the copies finished;
// missed are the copies it did not attempt, said here). Failed copies and bytes are
// counted from the copies' results, as copy counts them.
func (r *syncReport) sync(resp *backfill.Response, dests []*destinationStatus, copies *syncCopies, missed []imageResult) error {
	a := r.a
	bad := unlisted(dests)
	bytes := copies.bytesCopied()
	if a.json() {
		doc := newDocument(a, false, countedJSON)
		doc.Complete = bad == 0 && len(r.sourceProblems(resp)) == 0
		doc.Totals = totals{Repositories: resp.RepositoriesScanned, Images: resp.ImagesSeen, Copies: resp.InSync + resp.Drift + resp.Unplanned,
			InSync: resp.InSync, ToCopy: resp.Drift, NotPlanned: resp.Unplanned, Copied: ptr(resp.Copied), Failed: resp.Failed + len(missed),
			BytesCopied: ptr(bytes), DurationMs: resp.DurationMs, Held: resp.Held, Blocked: resp.Blocked}
		doc.Destinations, doc.Problems = dests, r.sourceProblems(resp)
		copies.mu.Lock()
		doc.Items = append(doc.Items, copies.items...)
		copies.mu.Unlock()
		for _, g := range resp.Gated {
			doc.Items = append(doc.Items, item{Source: repoRef(ecrname.Repo{Registry: r.source, Name: g.Repository}), Destination: r.destinationRef(g.Repository, g.Destination),
				Tag: g.Tag, Digest: g.Digest, State: g.Verdict, Reason: g.Code + ": " + g.Reason})
		}
		sortItems(doc.Items)
		if err := doc.write(a); err != nil {
			return err
		}
	} else {
		for _, m := range missed {
			fmt.Fprintln(a.stdout, m.line(a))
		}
		line := fmt.Sprintf("%s: %d already in sync, %d copied, %d failed", counts(resp, 0), resp.InSync, resp.Copied, copies.failed())
		if len(missed) > 0 {
			line += fmt.Sprintf(" (%d not attempted)", len(missed))
		}
		if resp.Unplanned > 0 {
			line += fmt.Sprintf(", %d not attempted (destination not listed)", resp.Unplanned)
		}
		fmt.Fprintf(a.stdout, "%s; %s sent in %s%s\n", line, humanBytes(bytes), (time.Duration(resp.DurationMs) * time.Millisecond).Round(time.Millisecond), gateCounts(resp))
		printGated(a.stdout, resp)
		r.printProblems(resp, dests)
	}
	if resp.Failed > 0 || bad > 0 || len(missed) > 0 {
		return exitError{ExitFailed}
	}
	return nil
}

// sortItems orders items by source, destination, tag and digest.
func sortItems(items []item) {
	sort.SliceStable(items, func(i, j int) bool {
		x, y := items[i], items[j]
		if x.Source != y.Source {
			return x.Source < y.Source
		}
		if x.Destination != y.Destination {
			return x.Destination < y.Destination
		}
		if (x.Tag == "") != (y.Tag == "") {
			return x.Tag != "" // tagged first
		}
		if x.Tag != y.Tag {
			return x.Tag < y.Tag
		}
		return x.Digest < y.Digest
	})
}
