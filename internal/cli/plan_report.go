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
	resp    *backfill.Response // without the blocked copies
	blocked []blockedCopy
	work    []backfill.Work // sorted: repository, destination, tagged first, tag, digest
	sizes   []int64         // per work item: what it adds to the bytes to upload
	bytes   map[string]int64
	total   int64
}

// newPlanned counts each digest's Size once per destination repository (its first copy
// there carries it; the others, and tag-only writes, add nothing); an index read from the
// source (indexes) counts the platforms its copy uploads instead: docs/CLI-JSON.md.
func newPlanned(resp *backfill.Response, blocked []blockedCopy, indexes indexUploads) *planned {
	p := &planned{resp: resp, blocked: blocked, work: append([]backfill.Work(nil), resp.Work...), bytes: map[string]int64{}}
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
		dest := w.Target.Repo().String()
		k := dest + "@" + w.Digest
		size := w.Size
		platforms, isIndex := indexes[indexKey(w.Repository, w.Digest, dest)]
		if counted[k] || (size == 0 && !isIndex) {
			continue
		}
		counted[k] = true
		if isIndex {
			// An index read from the source: the platforms its copy uploads, each once
			// per destination repository.
			size = 0
			for _, c := range platforms {
				if !counted[dest+"@"+c.digest] {
					counted[dest+"@"+c.digest] = true
					size += c.size
				}
			}
		}
		p.sizes[i] = size
		p.bytes[w.Repository+"|"+dest] += size
		p.total += size
	}
	return p
}

// estimate is the time the copies to make take: the busiest destination registry's
// manifest writes at its PutImage quota, and the bytes.
func (p *planned) estimate() *estimate {
	writes := map[ecrname.Registry]int{}
	busiest := 0
	for i := range p.work {
		r := p.work[i].Target.Destination.Registry()
		writes[r]++
		busiest = max(busiest, writes[r])
	}
	return newEstimate(len(p.work), float64(busiest)/putImageQuota, p.total)
}

// plan reports a dry run: the table per repository and destination (and with --detail
// a line per copy), the copies that cannot be made, the totals and the estimate, or the
// JSON document. resp is the plan without the blocked copies (withoutBlocked).
func (r *syncReport) plan(resp *backfill.Response, dests []*destinationStatus, blocked []blockedCopy, indexes indexUploads) error {
	a := r.a
	p := newPlanned(resp, blocked, indexes)
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
		for _, b := range blocked {
			fmt.Fprintln(w, b.result().line(a))
		}
		line := fmt.Sprintf("%s: %d in sync, %d to copy", counts(resp, len(blocked)), resp.InSync, resp.Drift)
		if len(blocked) > 0 {
			line += fmt.Sprintf(", %d cannot be copied", len(blocked))
		}
		if resp.Unplanned > 0 {
			line += fmt.Sprintf(", %d not planned (destination not listed)", resp.Unplanned)
		}
		fmt.Fprintln(w, line+gateCounts(resp))
		printGated(w, resp)
		if resp.Drift > 0 {
			fmt.Fprintln(w, "to copy: "+p.estimate().text())
		}
		printMounting(w, resp.Mounting)
		r.printProblems(resp, dests)
		if !complete {
			fmt.Fprintf(w, "plan incomplete: %s; fix the above and rerun\n", incompleteWhy(resp, dests))
		}
	}
	switch {
	case !complete, len(blocked) > 0, r.o.detailed && r.deadRules > 0:
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
		var notes []string
		if x.CreateRepository {
			notes = append(notes, "repository to create")
		}
		if n := blockedIn(p.blocked, x.Repository, x.Destination); n > 0 {
			notes = append(notes, fmt.Sprintf("%d cannot be copied (below)", n))
		}
		note := strings.Join(notes, "; ")
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
	doc.Totals = totals{Repositories: resp.RepositoriesScanned, Images: resp.ImagesSeen, Copies: resp.InSync + resp.Drift + resp.Unplanned + len(p.blocked),
		InSync: resp.InSync, ToCopy: resp.Drift, NotPlanned: resp.Unplanned, CannotCopy: len(p.blocked), Failed: resp.Failed, DurationMs: resp.DurationMs,
		Held: resp.Held, Blocked: resp.Blocked}
	doc.Estimate = p.estimate()
	for _, x := range resp.Plan {
		src := ecrname.Repo{Registry: r.source, Name: x.Repository}
		dest := r.destinationRef(x.Repository, x.Destination)
		doc.Repositories = append(doc.Repositories, repositoryPlan{Source: repoRef(src), Destination: dest, InSync: x.InSync, ToCopy: x.Work,
			CannotCopy: blockedIn(p.blocked, x.Repository, x.Destination), BytesToUpload: ptr(p.bytes[x.Repository+"|"+x.Destination]), CreateRepository: x.CreateRepository})
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
	for _, b := range p.blocked {
		doc.Items = append(doc.Items, item{Source: repoRef(ecrname.Repo{Registry: r.source, Name: b.work.Repository}), Destination: repoRef(b.work.Target.Repo()),
			Tag: b.work.Tag, Digest: b.work.Digest, State: b.state, Error: &errorJSON{Code: b.code, Message: b.msg}})
	}
	sortItems(doc.Items)
	doc.Destinations, doc.Problems = dests, r.sourceProblems(resp)
	doc.Mounting = mountingDocument(resp.Mounting)
	return doc
}

// mountingJSON is what blob mounting saves, or would, in one destination registry.
type mountingJSON struct {
	Registry       string `json:"registry"` // host name
	BlobMounting   string `json:"blobMounting"`
	BytesMountable int64  `json:"bytesMountable"`
	ImagesRead     int    `json:"imagesRead"`
	Partial        bool   `json:"partial,omitempty"`
	Reason         string `json:"reason,omitempty"`
}

func mountingDocument(ms []backfill.Mounting) []mountingJSON {
	var out []mountingJSON
	for _, m := range ms {
		if m.BytesMountable == 0 {
			continue
		}
		out = append(out, mountingJSON{Registry: registryHost(mountingRegistry(m)), BlobMounting: m.BlobMounting,
			BytesMountable: m.BytesMountable, ImagesRead: m.ImagesRead, Partial: m.Partial, Reason: m.Reason})
	}
	return out
}

func mountingRegistry(m backfill.Mounting) ecrname.Registry {
	account, region, _ := strings.Cut(m.Registry, "/")
	return ecrname.Registry{AccountID: account, Region: region}
}

// printMounting says, per destination registry where layers are shared between the
// repositories copied into, what blob mounting saves there — or would, and how to enable it.
func printMounting(w io.Writer, ms []backfill.Mounting) {
	for _, m := range ms {
		if m.BytesMountable == 0 {
			continue
		}
		reg := mountingRegistry(m)
		shared := "at least " + humanBytes(m.BytesMountable)
		if m.Partial {
			shared += fmt.Sprintf(" (from the %d images read)", m.ImagesRead)
		}
		switch m.BlobMounting {
		case "ENABLED":
			fmt.Fprintf(w, "blob mounting in %s is on: %s of layers shared between its repositories are mounted, not uploaded\n", m.Registry, shared)
		case "DISABLED":
			fmt.Fprintf(w, "blob mounting in %s is off: enabling it would save uploading %s of layers shared between its repositories "+
				"(aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED --region %s, in account %s)\n", m.Registry, shared, reg.Region, reg.AccountID)
		default:
			fmt.Fprintf(w, "blob mounting in %s: its setting could not be read (%s); enabled, it saves uploading %s of layers shared between its repositories\n",
				m.Registry, m.Reason, shared)
		}
	}
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
