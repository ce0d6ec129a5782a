package backfill

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

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
	// Size is imageSizeInBytes: the compressed layers of one image manifest (the bytes
	// a registry stores for it, shared layers included); for an index, its largest
	// platform's, not the sum
	// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageDetail.html).
	Size int64
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
	// Size is what the copy may upload, from the listing: the image's Size when the
	// destination lacks the digest, 0 when only a tag is written. An index counts 0 when
	// its platforms are copies of their own (the rule replicates untagged images, which
	// is how a listing shows them); otherwise its Size, the largest platform only.
	Size int64
	// DigestMissing: the destination lacks Digest, so the copy uploads what it lacks of
	// the image (not a tag-only write). False for a referrer's work (Digest is then the
	// subject's).
	DigestMissing bool
	// Gate is what the promotion gate of Target decided, when a dry run asked (gate.go).
	Gate *GateVerdict
	k    string // Key(), computed once
}

// key orders work deterministically within a repository: digest-only copies first (a
// child of an index, or a referrer, lands before what points at it), then by digest, tag
// and destination. The continuation token resumes after a key.
func (w *Work) Key() string {
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
	// Subject and SubjectTag are set for a referrer (a signature, an SBOM) that goes to
	// Target only because its subject does: the rule copies referrers but not untagged
	// images. It is present when Digest is; when it is missing, the work is to copy the
	// subject under SubjectTag — the copy brings the subject's referrers — since the
	// replicate function accepts work only for what the rules select.
	Subject, SubjectTag string
	Size                int64 // the image's Size, or 0 for an index whose platforms are candidates too
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
// untagged setting); an untagged OCI referrer (a signature, an SBOM, a signature of an
// SBOM) also follows its tagged ancestor to every destination whose rule copies referrers
// but not untagged images — as a copy of that ancestor's tag, which brings its referrers.
// Images pushed before since (when set) are skipped; a tagged one still leads its later
// referrers to their destinations.
func Expand(doc *rules.Document, repo string, images []Image, since time.Time) Expansion {
	x := &expander{doc: doc, repo: repo, seen: map[ecrname.Repo]bool{}, invalid: map[ecrname.Repo]bool{}, parents: map[string]string{},
		gatedRepo: doc.Gated(repo)}
	for i := range images {
		if len(images[i].Tags) == 0 && images[i].Subject != "" {
			x.parents[images[i].Digest] = images[i].Subject
		}
	}
	if len(x.parents) > 0 {
		x.subjects = map[string][]Candidate{}
	}
	var referrers []Image
	x.ex.Candidates = make([]Candidate, 0, len(images))
	for i := range images {
		img := &images[i]
		x.ex.ImagesSeen++
		before := !since.IsZero() && !img.PushedAt.IsZero() && img.PushedAt.Before(since)
		switch {
		case !img.pullable():
			x.ex.Archived++ // copied by the first reconcile after its restore
		case before:
			x.ex.SkippedBefore++
			if len(img.Tags) > 0 {
				x.learn(img)
			}
		case len(img.Tags) > 0:
			x.tagged(img)
		default:
			for _, t := range x.untagged() {
				if x.accept(t) {
					x.ex.Candidates = append(x.ex.Candidates, Candidate{Digest: img.Digest, Target: t, Size: img.Size})
				}
			}
			if img.Subject != "" {
				referrers = append(referrers, *img)
			}
		}
	}
	for _, img := range referrers {
		x.follow(img)
	}
	x.gatedCosignTags()
	return x.ex
}

// maxReferrerChain bounds how far a referrer is followed to a tagged ancestor: a
// signature of an SBOM of an image is two steps (the engine copies referrers three deep).
const maxReferrerChain = 3

// follow adds a referrer's candidates for the destinations its tagged ancestor goes to
// with referrers, where no rule sends it as an untagged image of its own.
func (x *expander) follow(img Image) {
	d := img.Subject
	for range maxReferrerChain {
		if vias, ok := x.subjects[d]; ok {
			for _, via := range vias {
				if x.copiesUntagged(via.Target) || !x.accept(via.Target) {
					continue
				}
				x.ex.Candidates = append(x.ex.Candidates, Candidate{Digest: img.Digest, Target: via.Target, Subject: via.Digest, SubjectTag: via.Tag, Size: img.Size})
			}
			return
		}
		parent, ok := x.parents[d]
		if !ok {
			return
		}
		d = parent
	}
}

// expander is Expand's state over one repository's listing.
type expander struct {
	doc           *rules.Document
	repo          string
	ex            Expansion
	seen, invalid map[ecrname.Repo]bool
	// digestOnly caches Targets(repo, ""), which every untagged image shares (most tags,
	// on the other hand, are unique).
	digestOnly     []rules.Target
	digestOnlyDone bool
	// subjects: tagged digest → its referrer-copying destinations (and a tag of it that
	// selects each); parents: untagged referrer → its subject. Kept only when some
	// untagged image is a referrer.
	subjects map[string][]Candidate
	parents  map[string]string
	// cosign tags of gated targets, copied with their subject, under one of the tags
	// that sends the subject there (gate.go); gatedRepo: some rule gates the repository.
	cosign        []Candidate
	gatedSubjects map[string][]Candidate
	gatedRepo     bool
}

// untagged are the targets of digest-only images: a gated target promotes tagged images
// only (docs/PROMOTION.md).
func (x *expander) untagged() []rules.Target {
	if !x.digestOnlyDone {
		for _, t := range x.doc.Targets(x.repo, "") {
			if !t.Gated() {
				x.digestOnly = append(x.digestOnly, t)
			}
		}
		x.digestOnlyDone = true
	}
	return x.digestOnly
}

// copiesUntagged says whether t copies digest-only images.
func (x *expander) copiesUntagged(t rules.Target) bool {
	return slices.ContainsFunc(x.untagged(), func(u rules.Target) bool { return u.Repo() == t.Repo() })
}

// accept records a target of a candidate, or its validation error once; it says whether
// the target is usable.
func (x *expander) accept(t rules.Target) bool {
	k := t.Repo()
	if t.Err != nil {
		if !x.invalid[k] {
			x.invalid[k] = true
			x.ex.Invalid = append(x.ex.Invalid, t.Err.Error())
		}
		return false
	}
	if !x.seen[k] {
		x.seen[k] = true
		x.ex.Targets = append(x.ex.Targets, t)
	}
	return true
}

// tagged adds the candidates of a tagged image: each tag where the rules send it.
func (x *expander) tagged(img *Image) {
	for _, tag := range img.Tags {
		for _, t := range x.doc.Targets(x.repo, tag) {
			if !x.accept(t) {
				continue
			}
			if t.Gated() && rules.IsCosignTag(tag) {
				x.cosign = append(x.cosign, Candidate{Digest: img.Digest, Tag: tag, Target: t, Size: img.Size})
				continue
			}
			size := img.Size
			if types.MediaType(img.MediaType).IsIndex() && x.copiesUntagged(t) {
				size = 0 // its platforms, untagged in the listing, are candidates of their own
			}
			x.ex.Candidates = append(x.ex.Candidates, Candidate{Digest: img.Digest, Tag: tag, Target: t, Size: size})
		}
	}
	x.learn(img)
}

// learn records where a tagged image's referrers go: its destinations whose rule copies
// referrers, and the tags its gated destinations' cosign tags go with (gate.go).
func (x *expander) learn(img *Image) {
	if x.subjects == nil && !x.gatedRepo {
		return
	}
	for _, tag := range img.Tags {
		for _, t := range x.doc.Targets(x.repo, tag) {
			if t.Err != nil {
				continue
			}
			if t.Referrers && x.subjects != nil {
				x.subjects[img.Digest] = appendTarget(x.subjects[img.Digest], Candidate{Digest: img.Digest, Tag: tag, Target: t})
			}
			if t.Gated() && !rules.IsCosignTag(tag) {
				x.gatedTags(img.Digest, tag, t)
			}
		}
	}
}

// appendTarget adds c unless a candidate for the same destination repository is there.
func appendTarget(cs []Candidate, c Candidate) []Candidate {
	for _, x := range cs {
		if x.Target.Repo() == c.Target.Repo() {
			return cs
		}
	}
	return append(cs, c)
}

// Plan is Expand followed by DiffRepository: what one source repository needs at its
// destinations.
func Plan(doc *rules.Document, repo string, images []Image, since time.Time, listings map[ecrname.Repo]*Listing) (Expansion, Diff) {
	ex := Expand(doc, repo, images, since)
	return ex, DiffRepository(repo, ex.Candidates, listings)
}

// After returns the work whose key sorts after cursor (all of it when cursor is "").
func After(work []Work, cursor string) []Work {
	if cursor == "" {
		return work
	}
	i := sort.Search(len(work), func(i int) bool { return strings.Compare(work[i].Key(), cursor) > 0 })
	return work[i:]
}
