package backfill

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sort"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// A dry run says, per destination registry, what ECR blob mounting does or would do for the
// copies it plans: a layer that the copies upload into several repositories of one
// registry goes over the network once when the registry has BLOB_MOUNTING enabled, and
// is mounted into the others ("Blob mounting in Amazon ECR",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html). Listings
// name images, not layers, so the dry run reads the manifests (never the layers) of the
// images to copy into registries where two or more repositories receive copies: 100 per
// ecr:BatchGetImage, at most MaxMountingReads. It counts only what the copies would mount
// (a lower bound): a layer a destination repository already holds is not uploaded there
// (ecr:BatchCheckLayerAvailability, mounting_dest.go), and layers are shared only between
// repositories the same identity (role) copies into with the same encryption type and key.

// MaxMountingReads bounds the manifests a dry run reads to count shared layers, and the
// ecr:BatchCheckLayerAvailability calls that say which layers destination repositories
// hold.
const MaxMountingReads = 1000

// Mounting is what blob mounting does, or would do, for one destination registry's copies.
type Mounting struct {
	Registry string `json:"registry"` // accountId/region
	// BlobMounting is the registry's BLOB_MOUNTING account setting: ENABLED, DISABLED, or
	// UNKNOWN (Reason says why).
	BlobMounting string `json:"blobMounting"`
	// BytesMountable is, of the layers the planned copies upload into this registry, what
	// another of its repositories receives too — copied by the same role, with the same
	// encryption — counted for each repository after the first: mounted instead of
	// uploaded when blob mounting is ENABLED. A lower bound: layers a destination
	// repository already holds are left out (not uploaded there), and so are layers other
	// repositories of the registry hold from earlier copies (a copy mounts only what its
	// process knows where to find), repositories whose encryption or layers could not be
	// read (Partial), and repositories created with the registry's AWS managed KMS key
	// (a KMS source without the rule's kmsKey: that key's ARN is known only once created).
	BytesMountable int64 `json:"bytesMountable"`
	// ImagesRead counts the manifests of this registry's images to copy that were read to
	// count it; Partial, that some images or destination repositories were not read (the
	// bound, the time, or a read that failed: Reason).
	ImagesRead int    `json:"imagesRead"`
	Partial    bool   `json:"partial,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// upload is a planned copy that uploads an image its destination lacks.
type upload struct {
	repo   string // source repository
	digest string
	target rules.Target
	exists bool // the destination repository exists (else the copy creates it)
}

func (u upload) dest() ecrname.Repo { return u.target.Repo() }
func (u upload) key() string        { return u.repo + "@" + u.digest }

// noteUploads remembers the work of a dry run that uploads (for planMounting), with
// whether its destination repository exists (dests: the listings).
func (r *invocation) noteUploads(work []Work, dests map[ecrname.Repo]*Listing) {
	for i := range work {
		if w := &work[i]; w.Size > 0 {
			l := dests[w.Target.Repo()]
			r.uploads = append(r.uploads, upload{repo: w.Repository, digest: w.Digest, target: w.Target, exists: l != nil && l.Exists})
		}
	}
}

// planMounting reports blob mounting for the registries that the dry run's copies upload
// into two or more repositories of.
func (r *invocation) planMounting(ctx context.Context) []Mounting {
	want := sharingUploads(r.uploads)
	if len(want) == 0 {
		return nil
	}
	src, err := r.b.Resolver.Client(ctx, ecraccess.SourceAccess(ecrname.Registry{AccountID: r.srcAccount, Region: r.srcRegion}, r.doc.SourceRoleARN()))
	var images map[string]readImage
	var facts map[ecrname.Repo]destFacts
	var destErrs map[ecrname.Registry]error // reading a destination registry
	if err == nil {
		images, err = r.readLayers(ctx, src.API(), want)
		var createdErr error
		facts, createdErr, destErrs = r.destinationFacts(ctx, src.API(), want, images)
		err = errors.Join(err, createdErr)
	}
	byRegistry := map[ecrname.Registry]*registryMounting{}
	for _, u := range want {
		reg := u.target.Destination.Registry()
		m := byRegistry[reg]
		if m == nil {
			m = newRegistryMounting()
			byRegistry[reg] = m
		}
		m.add(u, images, facts)
	}
	var out []Mounting
	for reg, m := range byRegistry {
		out = append(out, r.report(ctx, reg, m, errors.Join(err, destErrs[reg])))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registry < out[j].Registry })
	return out
}

// sharingUploads are the uploads into registries with two repositories or more.
func sharingUploads(uploads []upload) []upload {
	repos := map[ecrname.Registry]map[ecrname.Repo]bool{}
	for _, u := range uploads {
		reg := u.target.Destination.Registry()
		if repos[reg] == nil {
			repos[reg] = map[ecrname.Repo]bool{}
		}
		repos[reg][u.dest()] = true
	}
	var want []upload
	for _, u := range uploads {
		if len(repos[u.target.Destination.Registry()]) > 1 {
			want = append(want, u)
		}
	}
	return want
}

// registryMounting is what one registry's uploads share.
type registryMounting struct {
	shared   map[mountGroup]map[string]*sharedLayer // layer digest → the repositories that lack it
	read     map[string]bool                        // source images (repo@digest) counted in imagesRead
	reads    int
	accesses []ecraccess.Access // the identities its copies use, in first-seen order
	partial  bool
}

func newRegistryMounting() *registryMounting {
	return &registryMounting{shared: map[mountGroup]map[string]*sharedLayer{}, read: map[string]bool{}}
}

// mountGroup is where a layer can be mounted from: repositories of one registry that one
// role copies into, with one encryption (as the engine's mount scope).
type mountGroup struct {
	role, encryption string
}

type sharedLayer struct {
	size  int64
	repos map[ecrname.Repo]bool
}

// add counts one upload's layers that its destination repository lacks, in its group.
func (m *registryMounting) add(u upload, images map[string]readImage, facts map[ecrname.Repo]destFacts) {
	a := destinations.DestinationAccess(u.target.Destination)
	if !slices.Contains(m.accesses, a) {
		m.accesses = append(m.accesses, a)
	}
	img, read := images[u.key()]
	if read && !m.read[u.key()] {
		m.read[u.key()] = true
		m.reads += img.manifests
	}
	f, known := facts[u.dest()]
	if !read || !known {
		m.partial = true // not read: the bound, the time, a read that failed
		return
	}
	if f.encryption == "" {
		return // created with a key known only then: not counted
	}
	g := mountGroup{role: a.RoleARN, encryption: f.encryption}
	if m.shared[g] == nil {
		m.shared[g] = map[string]*sharedLayer{}
	}
	for _, l := range img.layers {
		if f.held[l.digest] {
			continue
		}
		s := m.shared[g][l.digest]
		if s == nil {
			s = &sharedLayer{size: l.size, repos: map[ecrname.Repo]bool{}}
			m.shared[g][l.digest] = s
		}
		s.repos[u.dest()] = true
	}
}

// mountable: each shared layer counted for each repository lacking it after the first.
func (m *registryMounting) mountable() int64 {
	var n int64
	for _, layers := range m.shared {
		for _, s := range layers {
			n += s.size * int64(len(s.repos)-1)
		}
	}
	return n
}

// report is one registry's Mounting: its setting asked, its count.
func (r *invocation) report(ctx context.Context, reg ecrname.Registry, m *registryMounting, readErr error) Mounting {
	out := Mounting{Registry: reg.AccountID + "/" + reg.Region, BytesMountable: m.mountable(), ImagesRead: m.reads, Partial: m.partial || readErr != nil}
	out.BlobMounting, out.Reason = r.blobMounting(ctx, m.accesses)
	if readErr != nil && out.Reason == "" {
		out.Reason = briefly("reading the images to copy and their destinations", readErr)
	}
	return out
}

// briefly is what went wrong in a few words: the error's code, not an SDK error chain.
func briefly(what string, err error) string {
	if code, _ := retry.Classify(err); code != "" {
		return what + ": " + code
	}
	return what + ": " + err.Error()
}

// blobMounting asks the destination registry for its BLOB_MOUNTING setting, with the
// identities the copies use, until one can read it (the setting is the registry's, the
// same for every identity; one identity may lack ecr:GetAccountSetting).
func (r *invocation) blobMounting(ctx context.Context, accesses []ecraccess.Access) (setting, reason string) {
	for _, a := range accesses {
		reg, err := r.b.Resolver.Client(ctx, a)
		if err != nil {
			reason = cmp.Or(reason, briefly("reaching the registry", err))
			continue
		}
		on, err := reg.AwaitBlobMounting(ctx) // a plan is in no hurry: a slow answer is still the answer
		switch {
		case err != nil:
			reason = cmp.Or(reason, briefly("ecr:GetAccountSetting", err))
		case on:
			return "ENABLED", ""
		default:
			return "DISABLED", ""
		}
	}
	return "UNKNOWN", reason
}
