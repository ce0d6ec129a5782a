package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// planned is a plan with what the CLI adds to the backfill's: the bytes each copy may
// upload, per copy and per destination repository.
type planned struct {
	resp  *backfill.Response
	work  []backfill.Work // sorted: repository, destination, tagged first, tag, digest
	sizes []int64         // per work item: what it adds to the bytes to upload
	bytes map[string]int64
	total int64
}

// newPlanned counts each digest's Size once per destination repository (its first copy
// there carries it; the others, and tag-only writes, add nothing): docs/CLI-JSON.md.
func newPlanned(resp *backfill.Response) *planned {
	p := &planned{resp: resp, work: append([]backfill.Work(nil), resp.Work...), bytes: map[string]int64{}}
	sort.SliceStable(p.work, func(i, j int) bool {
		x, y := &p.work[i], &p.work[j]
		if x.Repository != y.Repository {
			return x.Repository < y.Repository
		}
		if dx, dy := x.Target.Repo().String(), y.Target.Repo().String(); dx != dy {
			return dx < dy
		}
		if (x.Tag == "") != (y.Tag == "") {
			return x.Tag != ""
		}
		if x.Tag != y.Tag {
			return x.Tag < y.Tag
		}
		return x.Digest < y.Digest
	})
	counted := map[string]bool{}
	p.sizes = make([]int64, len(p.work))
	for i := range p.work {
		w := &p.work[i]
		k := w.Target.Repo().String() + "@" + w.Digest
		if w.Size > 0 && !counted[k] {
			counted[k] = true
			p.sizes[i] = w.Size
			p.bytes[w.Repository+"|"+w.Target.Repo().String()] += w.Size
			p.total += w.Size
		}
	}
	return p
}

func (p *planned) estimate() *estimate {
	return newEstimate(p.resp.Drift, p.resp.EstimatedSecondsAtQuota, p.total)
}

// plan reports a dry run: the table per repository and destination (and with --detail
// a line per copy), the totals and the estimate, or the JSON document.
func (r *syncReport) plan(resp *backfill.Response, dests []*destinationStatus) error {
	a := r.a
	p := newPlanned(resp)
	complete := unlisted(dests) == 0 && resp.Failed == 0
	if a.json() {
		if err := r.planDocument(p, dests, complete).write(a); err != nil {
			return err
		}
	} else {
		w := a.stdout
		r.planTable(w, p)
		if r.o.detail && len(p.work) > 0 {
			fmt.Fprintln(w)
			r.planDetail(w, p)
		}
		line := fmt.Sprintf("%s: %d in sync, %d to copy", counts(resp), resp.InSync, resp.Drift)
		if resp.Unplanned > 0 {
			line += fmt.Sprintf(", %d not planned (destination not listed)", resp.Unplanned)
		}
		fmt.Fprintln(w, line+gateCounts(resp))
		printGated(w, resp)
		if resp.Drift > 0 {
			fmt.Fprintln(w, "to copy: "+p.estimate().text())
		}
		r.printProblems(resp, dests)
		if !complete {
			fmt.Fprintf(w, "plan incomplete: %s; fix the above and rerun\n", incompleteWhy(resp, dests))
		}
	}
	switch {
	case !complete, r.o.detailed && r.deadRules > 0:
		return exitError{ExitFailed}
	case r.o.detailed && resp.Drift > 0:
		return exitError{ExitDrift}
	}
	return nil
}

// planTable prints a row per source and destination repository: copies in sync, to make,
// bytes to upload; then the destinations that could not be listed.
func (r *syncReport) planTable(w io.Writer, p *planned) {
	type row struct{ repo, dest, inSync, work, bytes, note string }
	var rows []row
	for _, x := range p.resp.Plan {
		note := ""
		if x.CreateRepository {
			note = "repository to create"
		}
		rows = append(rows, row{x.Repository, x.Destination, fmt.Sprint(x.InSync), fmt.Sprint(x.Work), humanBytes(p.bytes[x.Repository+"|"+x.Destination]), note})
	}
	for _, f := range p.resp.Failures {
		if f.Destination != "" && f.Digest == "" {
			rows = append(rows, row{f.Repository, f.Destination, "-", "-", "-", "NOT LISTED (see below)"})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].repo != rows[j].repo {
			return rows[i].repo < rows[j].repo
		}
		return rows[i].dest < rows[j].dest
	})
	wr, wd := len("REPOSITORY"), len("DESTINATION")
	for _, x := range rows {
		wr, wd = max(wr, len(x.repo)), max(wd, len(x.dest))
	}
	// Names left-aligned, numbers right-aligned.
	fmt.Fprintf(w, "%-*s  %-*s  %7s  %7s  %9s\n", wr, "REPOSITORY", wd, "DESTINATION", "IN SYNC", "TO COPY", "TO UPLOAD")
	for _, x := range rows {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-*s  %-*s  %7s  %7s  %9s  %s", wr, x.repo, wd, x.dest, x.inSync, x.work, x.bytes, x.note), " "))
	}
}

// planDetail prints a line per copy to make: the source tag (or untagged digest), what it
// adds to the bytes, the destination repository, and why.
func (r *syncReport) planDetail(w io.Writer, p *planned) {
	type row struct{ src, size, dest, why string }
	rows := make([]row, len(p.work))
	ws, wz, wd := len("SOURCE"), len("SIZE"), len("DESTINATION")
	for i := range p.work {
		x := &p.work[i]
		src := x.Repository
		if x.Tag != "" {
			src += ":" + x.Tag
		}
		why := x.Reason
		if x.Gate != nil && x.Gate.Verdict != "pass" {
			why += "; " + x.Gate.Verdict + " by its promotion gate (" + x.Gate.Code + ")"
		}
		rows[i] = row{src + "@" + shortDigest(x.Digest), humanBytes(p.sizes[i]), x.Target.Repo().String(), why}
		ws, wz, wd = max(ws, len(rows[i].src)), max(wz, len(rows[i].size)), max(wd, len(rows[i].dest))
	}
	fmt.Fprintf(w, "%-*s  %*s  %-*s  %s\n", ws, "SOURCE", wz, "SIZE", wd, "DESTINATION", "WHY")
	for _, x := range rows {
		fmt.Fprintf(w, "%-*s  %*s  %-*s  %s\n", ws, x.src, wz, x.size, wd, x.dest, x.why)
	}
}

// planDocument is the plan as the JSON document: every copy to make is an item.
func (r *syncReport) planDocument(p *planned, dests []*destinationStatus, complete bool) *document {
	resp := p.resp
	doc := newDocument(r.a, true, countedJSON)
	doc.Complete = complete
	doc.Totals = totals{Repositories: resp.RepositoriesScanned, Images: resp.ImagesSeen, Copies: resp.InSync + resp.Drift + resp.Unplanned,
		InSync: resp.InSync, ToCopy: resp.Drift, NotPlanned: resp.Unplanned, Failed: resp.Failed, DurationMs: resp.DurationMs,
		Held: resp.Held, Blocked: resp.Blocked}
	doc.Estimate = p.estimate()
	for _, x := range resp.Plan {
		src := ecrname.Repo{Registry: r.source, Name: x.Repository}
		dest := r.destinationRef(x.Repository, x.Destination)
		doc.Repositories = append(doc.Repositories, repositoryPlan{Source: repoRef(src), Destination: dest, InSync: x.InSync, ToCopy: x.Work,
			BytesToUpload: ptr(p.bytes[x.Repository+"|"+x.Destination]), CreateRepository: x.CreateRepository})
	}
	for i := range p.work {
		x := &p.work[i]
		state, reason := stateToCopy, x.Reason
		if g := x.Gate; g != nil && (g.Verdict == stateHeld || g.Verdict == stateBlocked) {
			state, reason = g.Verdict, g.Code+": "+g.Reason
		}
		doc.Items = append(doc.Items, item{Source: repoRef(ecrname.Repo{Registry: r.source, Name: x.Repository}), Destination: repoRef(x.Target.Repo()),
			Tag: x.Tag, Digest: x.Digest, State: state, Reason: reason, SizeBytes: ptr(p.sizes[i])})
	}
	doc.Destinations, doc.Problems = dests, r.sourceProblems(resp)
	return doc
}

// destinationRef is a destination repository ("account/region/name", as the backfill
// names it) by host.
func (r *syncReport) destinationRef(source, dest string) string {
	for _, t := range r.doc.RepositoryTargets(source) {
		if t.Repo().String() == dest {
			return repoRef(t.Repo())
		}
	}
	return dest
}

// gateCounts adds to a summary line the copies promotion gates hold and block.
func gateCounts(resp *backfill.Response) string {
	if resp.Held+resp.Blocked == 0 {
		return ""
	}
	return fmt.Sprintf("; promotion gates hold %d and block %d of them", resp.Held, resp.Blocked)
}

// printGated names the copies promotion gates hold or block, and why.
func printGated(w io.Writer, resp *backfill.Response) {
	for _, g := range resp.Gated {
		src := g.Repository
		if g.Tag != "" {
			src += ":" + g.Tag
		}
		fmt.Fprintf(w, "%s %s@%s -> %s: %s: %s\n", g.Verdict, src, shortDigest(g.Digest), g.Destination, g.Code, g.Reason)
	}
	if n := resp.Held + resp.Blocked - len(resp.Gated); n > 0 {
		fmt.Fprintf(w, "(and %d more held or blocked)\n", n)
	}
}
