package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The content of one registry (account, region): repositories with their settings,
// manifests and tags, and blobs on disk. Both the OCI endpoint and the ECR API read and
// write it, so they always agree.

var repositoryNamePattern = regexp.MustCompile(`^` + ecrRepositoryPattern + `$`)

// ecrRepositoryPattern is ECR's repository-name pattern (API_CreateRepository, repositoryName).
const ecrRepositoryPattern = `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`

// Manifest media types ECR stores; anything else in an index is a blob.
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-manifest-formats.html
var manifestMediaTypes = map[string]bool{
	"application/vnd.docker.distribution.manifest.v1+json":      true,
	"application/vnd.docker.distribution.manifest.v1+prettyjws": true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
}

// isNondistributable reports whether a layer media type is a non-distributable (foreign)
// layer, which ECR accepts in a manifest without the blob having been pushed: Windows base
// layers are restricted by license from being distributed, and clients fetch them from the
// descriptor's urls. ECR User Guide, "Amazon ECR interface VPC endpoints", "Considerations
// for Windows images" (https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html);
// moby/moby#34216.
func isNondistributable(mt string) bool {
	return mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
		strings.HasPrefix(mt, "application/vnd.oci.image.layer.nondistributable.")
}

func isIndexType(mt string) bool {
	return mt == "application/vnd.oci.image.index.v1+json" || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// maxManifestSize is ECR's cap on a manifest (imageManifest, API_Image).
const maxManifestSize = 4 << 20

type exclusionFilter struct {
	FilterType string `json:"filterType"`
	Filter     string `json:"filter"`
}

type resourceTag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

type repository struct {
	name            string
	createdAt       time.Time
	mutability      string
	exclusions      []exclusionFilter
	scanOnPush      bool
	encryptionType  string
	kmsKey          string
	tags            []resourceTag
	lifecyclePolicy string
	policy          string

	manifests map[string]*manifestRecord // by digest
	tagIndex  map[string]string          // tag → digest
	blobs     map[string]int64           // blobs linked to this repository → size
}

type manifestRecord struct {
	digest       string
	mediaType    string
	body         []byte
	pushedAt     time.Time
	size         int64  // ECR's imageSizeInBytes
	artifactType string // config media type, or the manifest's artifactType
	subject      string
	annotations  map[string]string
	blobs        []descriptor // config + layers (images), non-manifest children (indexes)
	children     []descriptor // manifests an index references

	// The archive storage class (archive.go): status "" is ACTIVE.
	status                          string
	lastArchivedAt, lastActivatedAt time.Time
	activatingSince                 time.Time
	lastPulledAt                    time.Time   // lastRecordedPullTime (pulltime.go)
	scan                            *ScanResult // the image's scan (scan.go); nil: never scanned
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     json.RawMessage   `json:"platform,omitempty"`
}

// parsedManifest is the union of the fields of image manifests and indexes we look at.
type parsedManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
	// Docker schema 1
	FSLayers []struct {
		BlobSum string `json:"blobSum"`
	} `json:"fsLayers"`
}

// parseManifest reads what the registry needs to know of a manifest and checks that its
// declared media type is one ECR stores.
func parseManifest(body []byte, contentType string) (*manifestRecord, error) {
	if len(body) > maxManifestSize {
		return nil, fmt.Errorf("manifest is %d bytes, over the %d-byte limit", len(body), maxManifestSize)
	}
	var pm parsedManifest
	if err := json.Unmarshal(body, &pm); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %v", err)
	}
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	if mt == "" {
		mt = pm.MediaType
	}
	if mt == "" && pm.SchemaVersion == 1 {
		mt = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	}
	if !manifestMediaTypes[mt] {
		return nil, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	if pm.MediaType != "" && pm.MediaType != mt {
		return nil, fmt.Errorf("manifest mediaType %q does not match Content-Type %q", pm.MediaType, mt)
	}
	sum := sha256.Sum256(body)
	rec := &manifestRecord{
		digest:       "sha256:" + hex.EncodeToString(sum[:]),
		mediaType:    mt,
		body:         body,
		artifactType: pm.ArtifactType,
		annotations:  pm.Annotations,
	}
	if pm.Subject != nil {
		rec.subject = pm.Subject.Digest
	}
	switch {
	case isIndexType(mt):
		for _, d := range pm.Manifests {
			if manifestMediaTypes[d.MediaType] {
				rec.children = append(rec.children, d)
			} else {
				rec.blobs = append(rec.blobs, d)
			}
		}
	case pm.SchemaVersion == 1:
		for _, l := range pm.FSLayers {
			rec.blobs = append(rec.blobs, descriptor{Digest: l.BlobSum})
		}
	default:
		if pm.Config == nil {
			return nil, fmt.Errorf("image manifest has no config")
		}
		rec.blobs = append(rec.blobs, *pm.Config)
		if rec.artifactType == "" {
			rec.artifactType = pm.Config.MediaType
		}
		for _, l := range pm.Layers {
			rec.blobs = append(rec.blobs, l)
			rec.size += l.Size
		}
	}
	return rec, nil
}

// tagImmutable says whether a push of tag must not overwrite it, per the repository's
// mutability setting and exclusion filters.
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-tag-mutability.html
func (r *repository) tagImmutable(tag string) bool {
	excluded := false
	for _, f := range r.exclusions {
		if ok, _ := path.Match(f.Filter, tag); ok {
			excluded = true
		}
	}
	switch r.mutability {
	case "IMMUTABLE":
		return true
	case "IMMUTABLE_WITH_EXCLUSION":
		return !excluded
	case "MUTABLE_WITH_EXCLUSION":
		return excluded
	default:
		return false
	}
}

// missingReferences lists what a manifest references that the repository lacks: an
// image's config and layers, an index's child manifests. ECR refuses such a push
// (LayersNotFoundException, ReferencedImagesNotFoundException). Non-distributable
// (foreign) layers are not required: they live elsewhere, named by their urls.
func (r *repository) missingReferences(rec *manifestRecord) (blobs, manifests []string) {
	for _, b := range rec.blobs {
		if _, ok := r.blobs[b.Digest]; !ok && !isNondistributable(b.MediaType) {
			blobs = append(blobs, b.Digest)
		}
	}
	for _, c := range rec.children {
		if _, ok := r.manifests[c.Digest]; !ok {
			manifests = append(manifests, c.Digest)
		}
	}
	return blobs, manifests
}

// imageSize is ECR's imageSizeInBytes: the layers of an image, the largest child of an index.
func (r *repository) imageSize(rec *manifestRecord) int64 {
	if len(rec.children) == 0 {
		return rec.size
	}
	var max int64
	for _, c := range rec.children {
		if child, ok := r.manifests[c.Digest]; ok && child.size > max {
			max = child.size
		}
	}
	return max
}

// tagsOf lists the tags pointing at a digest, sorted.
func (r *repository) tagsOf(digest string) []string {
	var tags []string
	for t, d := range r.tagIndex {
		if d == digest {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	return tags
}

// sortedDigests lists the repository's manifests by push time, then digest.
func (r *repository) sortedDigests() []string {
	ds := make([]string, 0, len(r.manifests))
	for d := range r.manifests {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool {
		a, b := r.manifests[ds[i]], r.manifests[ds[j]]
		if !a.pushedAt.Equal(b.pushedAt) {
			return a.pushedAt.Before(b.pushedAt)
		}
		return a.digest < b.digest
	})
	return ds
}

// blobStore keeps blobs content-addressed on disk so big images never live in memory.
type blobStore struct{ dir string }

func (b blobStore) path(digest string) (string, error) {
	algo, hexPart, ok := strings.Cut(digest, ":")
	if !ok || algo != "sha256" || len(hexPart) != 64 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return "", fmt.Errorf("invalid digest %q", digest)
	}
	return filepath.Join(b.dir, "blobs", hexPart[:2], hexPart), nil
}

func (b blobStore) stat(digest string) (int64, bool) {
	p, err := b.path(digest)
	if err != nil {
		return 0, false
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// commit moves a finished upload into place.
func (b blobStore) commit(tmp, digest string) error {
	p, err := b.path(digest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
