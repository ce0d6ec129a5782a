package backfill

import (
	"sort"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Image is one source image as DescribeImages lists it.
type Image struct {
	Digest            string
	Tags              []string
	PushedAt          time.Time
	MediaType         string // imageManifestMediaType
	ArtifactMediaType string
	Subject           string // subjectManifestDigest: an OCI referrer (signature, SBOM, …)
	// Status is the image's storage status (imageStatus): ACTIVE, or ARCHIVED or
	// ACTIVATING for an image in (or leaving) the archive storage class, which cannot be
	// pulled (archive-image.html). Empty: ACTIVE.
	Status string
}

// pullable: an image that is not archived (nor still being restored).
func (img *Image) pullable() bool { return img.Status == "" || img.Status == "ACTIVE" }

// Listing is what a destination repository holds, from DescribeImages (every status:
// an image its lifecycle archived is present, not drift — copying it again would restore
// it at the destination's expense).
type Listing struct {
	Exists  bool              // false: RepositoryNotFoundException, the repository is to be created
	Digests map[string]bool   // every digest present
	Tags    map[string]string // tag → digest
	// Err: the destination could not be listed (its role cannot be assumed, say); what
	// the rules ask of it is not planned (Diff.Unplanned).
	Err error
}

// Work is one copy to make: a source digest (and tag) to one destination repository.
type Work struct {
	Repository string // source repository
	Digest     string
	Tag        string // "" for a digest-only copy
	Target     rules.Target
	Reason     string
	k          string // key(), computed once
}

// key orders work deterministically within a repository: digest-only copies first (a
// child of an index, or a referrer, lands before what points at it), then by digest, tag
// and destination. The continuation token resumes after a key.
func (w *Work) key() string {
	if w.k != "" {
		return w.k
	}
	group := "1"
	if w.Tag == "" {
		group = "0"
	}
	return group + "|" + w.Digest + "|" + w.Target.Repo().String() + "|" + w.Tag
}

// groupKey is the unit of inline copying: every tag of one digest to one destination,
// copied in sequence so blobs move once.
func (w *Work) groupKey() string {
	group := "1"
	if w.Tag == "" {
		group = "0"
	}
	return group + "|" + w.Digest + "|" + w.Target.Repo().String()
}

// Candidate is one (digest, tag, target) the rules ask for, before looking at the
// destination.
type Candidate struct {
	Digest string
	Tag    string
	Target rules.Target
}

// Expansion is what the rules ask for in one source repository.
type Expansion struct {
	Candidates    []Candidate
	Targets       []rules.Target // distinct destinations (by Repo), in first-seen order
	ImagesSeen    int
	SkippedBefore int      // pushed before since
	Archived      int      // archived (or being restored) at the source: cannot be pulled, so no work
	Invalid       []string // reasons: targets whose destination name is invalid
}

// Expand applies the rules to one repository's images: each tag goes where
// Targets(repo, tag) says; a digest-only image where Targets(repo, "") says (the rule's
// untagged setting); an untagged OCI referrer whose rule does not replicate untagged
// images still follows its subject to every destination whose rule copies referrers.
// Images pushed before since (when set) are skipped.
func Expand(doc *rules.Document, repo string, images []Image, since time.Time) Expansion {
	var ex Expansion
	seenTarget := map[ecrname.Repo]bool{}
	invalidSeen := map[ecrname.Repo]bool{}
	// accept records a target of a candidate, or its validation error once; it says
	// whether the target is usable.
	accept := func(t rules.Target) bool {
		k := t.Repo()
		if t.Err != nil {
			if !invalidSeen[k] {
				invalidSeen[k] = true
				ex.Invalid = append(ex.Invalid, t.Err.Error())
			}
			return false
		}
		if !seenTarget[k] {
			seenTarget[k] = true
			ex.Targets = append(ex.Targets, t)
		}
		return true
	}
	// Targets per tag are the same for every image carrying the tag, and most tags are
	// unique; cache the digest-only answer, which every untagged image shares.
	var untagged []rules.Target
	untaggedDone := false
	// subject digest → referrer-copying targets; only built when some untagged image is
	// a referrer.
	var subjectTargets map[string][]rules.Target
	for i := range images {
		if len(images[i].Tags) == 0 && images[i].Subject != "" {
			subjectTargets = map[string][]rules.Target{}
			break
		}
	}
	var referrers []Image
	ex.Candidates = make([]Candidate, 0, len(images))
	for i := range images {
		img := &images[i]
		ex.ImagesSeen++
		if !img.pullable() {
			ex.Archived++ // copied by the first reconcile after its restore
			continue
		}
		if !since.IsZero() && !img.PushedAt.IsZero() && img.PushedAt.Before(since) {
			ex.SkippedBefore++
			continue
		}
		if len(img.Tags) == 0 {
			if !untaggedDone {
				untagged, untaggedDone = doc.Targets(repo, ""), true
			}
			if len(untagged) == 0 {
				if img.Subject != "" {
					referrers = append(referrers, *img)
				}
				continue
			}
			for _, t := range untagged {
				if accept(t) {
					ex.Candidates = append(ex.Candidates, Candidate{Digest: img.Digest, Target: t})
				}
			}
			continue
		}
		for _, tag := range img.Tags {
			for _, t := range doc.Targets(repo, tag) {
				if !accept(t) {
					continue
				}
				ex.Candidates = append(ex.Candidates, Candidate{Digest: img.Digest, Tag: tag, Target: t})
				if t.Referrers && subjectTargets != nil {
					subjectTargets[img.Digest] = appendTarget(subjectTargets[img.Digest], t)
				}
			}
		}
	}
	for _, img := range referrers {
		for _, t := range subjectTargets[img.Subject] {
			ex.Candidates = append(ex.Candidates, Candidate{Digest: img.Digest, Target: t})
		}
	}
	return ex
}

func appendTarget(ts []rules.Target, t rules.Target) []rules.Target {
	for _, x := range ts {
		if x.Repo() == t.Repo() {
			return ts
		}
	}
	return append(ts, t)
}

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
		reason := ""
		switch {
		case l == nil || !l.Exists:
			reason = ReasonRepositoryMissing
			tt.CreateRepository = true
		case c.Tag == "":
			if !l.Digests[c.Digest] {
				reason = ReasonDigestMissing
			}
		default:
			at, ok := l.Tags[c.Tag]
			switch {
			case ok && at == c.Digest:
			case ok:
				reason = ReasonTagElsewhere
			case l.Digests[c.Digest]:
				reason = ReasonTagMissing
			default:
				reason = ReasonDigestMissing
			}
		}
		if reason == "" {
			tt.InSync++
			d.InSync++
			continue
		}
		// Several rules can produce the same copy; keep one.
		w := Work{Repository: repo, Digest: c.Digest, Tag: c.Tag, Target: c.Target, Reason: reason}
		w.k = w.key()
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

// Plan is Expand followed by DiffRepository: what one source repository needs at its
// destinations.
func Plan(doc *rules.Document, repo string, images []Image, since time.Time, listings map[ecrname.Repo]*Listing) (Expansion, Diff) {
	ex := Expand(doc, repo, images, since)
	return ex, DiffRepository(repo, ex.Candidates, listings)
}

// after returns the work whose key sorts after cursor (all of it when cursor is "").
func after(work []Work, cursor string) []Work {
	if cursor == "" {
		return work
	}
	i := sort.Search(len(work), func(i int) bool { return strings.Compare(work[i].key(), cursor) > 0 })
	return work[i:]
}
