package backfill

import (
	"sort"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Diff is the work for one repository: candidates the destinations lack, sorted by key.
type Diff struct {
	Work   []Work
	InSync int
	// Unplanned counts the candidates of destinations that could not be listed.
	Unplanned int
	// PerTarget counts per destination repository: in sync, work.
	PerTarget map[ecrname.Repo]*TargetTotals
}

// TargetTotals are the plan totals of one destination repository.
type TargetTotals struct {
	InSync           int  `json:"inSync"`
	Work             int  `json:"work"`
	CreateRepository bool `json:"createRepository,omitempty"`
}

// Reasons for work.
const (
	ReasonRepositoryMissing = "destination repository missing"
	ReasonDigestMissing     = "digest missing"
	ReasonTagMissing        = "tag missing"
	ReasonTagElsewhere      = "tag points to another digest"
	ReasonReferrerMissing   = "a referrer of the tag's image is missing"
)

// DiffRepository compares candidates with destination listings (by destination
// repository; a missing entry means the repository does not exist, one with Err that it
// could not be listed). It is pure: planning a registry is Expand + DiffRepository per
// repository, over listings fetched once.
func DiffRepository(repo string, cands []Candidate, listings map[ecrname.Repo]*Listing) Diff {
	d := Diff{PerTarget: map[ecrname.Repo]*TargetTotals{}}
	seen := make(map[string]bool, len(cands))
	for i := range cands {
		c := &cands[i]
		k := c.Target.Repo()
		l := listings[k]
		if l != nil && l.Err != nil {
			d.Unplanned++
			continue
		}
		tt := d.PerTarget[k]
		if tt == nil {
			tt = &TargetTotals{}
			d.PerTarget[k] = tt
		}
		missing := l == nil || !l.Exists || !l.Digests[c.Digest]
		reason := driftReason(c, l)
		if reason == ReasonRepositoryMissing {
			tt.CreateRepository = true
		}
		if reason == "" {
			tt.InSync++
			d.InSync++
			continue
		}
		// Several rules can produce the same copy; keep one.
		w := Work{Repository: repo, Digest: c.Digest, Tag: c.Tag, Target: c.Target, Reason: reason}
		if missing {
			w.Size, w.DigestMissing = c.Size, c.Subject == ""
		}
		if c.Subject != "" {
			w.Digest, w.Tag, w.Reason = c.Subject, c.SubjectTag, ReasonReferrerMissing+" ("+c.Digest+")"
		}
		w.k = w.Key()
		wk := w.k
		if seen[wk] {
			continue
		}
		seen[wk] = true
		tt.Work++
		d.Work = append(d.Work, w)
	}
	sort.Slice(d.Work, func(i, j int) bool { return d.Work[i].k < d.Work[j].k })
	return d
}

// driftReason is why candidate c needs a copy to the destination repository listed as l
// (nil: it does not exist), or "" when the destination has it.
func driftReason(c *Candidate, l *Listing) string {
	switch {
	case l == nil || !l.Exists:
		return ReasonRepositoryMissing
	case c.Tag == "":
		if !l.Digests[c.Digest] {
			return ReasonDigestMissing
		}
		return ""
	}
	at, ok := l.Tags[c.Tag]
	switch {
	case ok && at == c.Digest:
		return ""
	case ok:
		return ReasonTagElsewhere
	case l.Digests[c.Digest]:
		return ReasonTagMissing
	}
	return ReasonDigestMissing
}
