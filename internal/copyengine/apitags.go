package copyengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// TagAPI reads and writes the tags of one repository that the registry API cannot carry:
// ECR's PutImage takes tags of up to 300 characters, the OCI distribution API at most
// 128 (ecrname.MaxRegistryTagLen). It is the ECR API (BatchGetImage, DescribeImages,
// PutImage) for the endpoint's repository; errors carry the API's codes
// (retry.Classified).
type TagAPI interface {
	// GetTag returns the manifest tag points at, exactly as stored; found is false when
	// the repository has no such tag. It is a pull (BatchGetImage): the engine calls it
	// on the source only.
	GetTag(ctx context.Context, tag string) (manifest []byte, mediaType string, found bool, err error)
	// TagDigest returns the digest tag points at, without pulling the image (ECR records
	// a pull, lastRecordedPullTime, on every BatchGetImage: the destination's reads must
	// not keep its replicas from expiring by days since last pull); found is false when
	// the repository has no such tag or, as the registry's 404 says of a shorter tag,
	// when its image cannot be pulled (archived).
	TagDigest(ctx context.Context, tag string) (digest string, found bool, err error)
	// PutTag writes manifest (whose digest is digest) under tag.
	PutTag(ctx context.Context, tag string, manifest []byte, mediaType, digest string) error
}

// apiTag reports whether tag is one only the ECR API carries.
func apiTag(tag string) bool { return len(tag) > ecrname.MaxRegistryTagLen }

// errNoTag is the not-found a tag read through the API answers: the registry's 404, so that
// every caller tells an absent tag the same way (isNotFound).
var errNoTag = &transport.Error{StatusCode: http.StatusNotFound}

// getAPITag reads a source tag through its TagAPI: the manifest, or errNoTag.
func (s *session) getAPITag(ctx context.Context, tag string) (*rawManifest, error) {
	op := "get source tag " + tag
	raw, mt, found, err := s.src.tags.GetTag(ctx, tag)
	if err != nil {
		return nil, classify(op, onSource, err)
	}
	if !found {
		return nil, errNoTag
	}
	h, n, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, classify(op, onSource, err)
	}
	return &rawManifest{raw: raw, desc: v1.Descriptor{Digest: h, Size: n, MediaType: types.MediaType(mt)}}, nil
}

// putAPITag writes m under tag through the destination's TagAPI. ECR's answers are read
// as the registry's would be: a tag already there on this manifest is done
// (ImageAlreadyExistsException), an IMMUTABLE tag elsewhere is the registry's TAG_INVALID
// conflict (ImageTagAlreadyExistsException; API_PutImage). The write takes its turn from
// the destination host's pacer, as the registry's manifest PUTs do — it is the same
// PutImage quota — and a ThrottlingException that outlasted the SDK's own retries counts
// as a throttled write (the SDK's retries in between are not seen here).
func (s *session) putAPITag(ctx context.Context, tag string, m *rawManifest, op string) error {
	p := s.c.hostPacer(s.dst.repo.RegistryStr())
	if err := p.wait(ctx); err != nil {
		return classify(op+" "+tag, onDest, err)
	}
	sent := time.Now()
	err := s.dst.tags.PutTag(ctx, tag, m.raw, string(m.desc.MediaType), m.desc.Digest.String())
	switch code, _ := retry.Classify(err); {
	case err == nil, code == "ImageAlreadyExistsException":
		p.accepted(time.Now())
		return nil
	case code == "ThrottlingException":
		p.throttled(sent, time.Now())
		if n, ok := ctx.Value(throttleCountKey{}).(*atomic.Int64); ok {
			n.Add(1)
		}
	case code == "ImageTagAlreadyExistsException":
		return &Error{Op: op + " " + tag, Code: string(transport.TagInvalidErrorCode), Status: http.StatusBadRequest, AtDest: true, Err: err}
	}
	return classify(op+" "+tag, onDest, err)
}

// putTag writes m under a destination tag: by the registry, or through the ECR API for a
// tag the registry cannot carry.
func (s *session) putTag(ctx context.Context, tag string, m *rawManifest, op string) error {
	if apiTag(tag) {
		return s.putAPITag(ctx, tag, m, op)
	}
	return s.put(ctx, s.dst.repo.Tag(tag), m, op)
}

// verifyTag checks the destination tag serves the digest we wrote.
func (s *session) verifyTag(ctx context.Context, tag string, want v1.Hash) error {
	if !apiTag(tag) {
		return s.verify(ctx, s.dst.repo.Tag(tag), want)
	}
	at, err := s.destAPITag(ctx, tag)
	if errors.Is(err, errNoTag) {
		return &Error{Op: "verify tag " + tag, Code: CodeDigestMismatch, AtDest: true, Transient: true, Err: errors.New("the destination has no such tag")}
	}
	if err != nil {
		return err
	}
	if at != want {
		return &Error{Op: "verify tag " + tag, Code: CodeDigestMismatch, AtDest: true, Transient: true,
			Err: fmt.Errorf("destination serves %s, want %s", at, want)}
	}
	return nil
}

// destAPITag reads what a destination tag points at through its TagAPI (not a pull):
// the digest, or errNoTag.
func (s *session) destAPITag(ctx context.Context, tag string) (v1.Hash, error) {
	op := "get destination tag " + tag
	d, found, err := s.dst.tags.TagDigest(ctx, tag)
	if err != nil {
		return v1.Hash{}, classify(op, onDest, err)
	}
	if !found {
		return v1.Hash{}, errNoTag
	}
	h, err := v1.NewHash(d)
	if err != nil {
		return v1.Hash{}, &Error{Op: op, Code: string(transport.DigestInvalidErrorCode), AtDest: true, Err: err}
	}
	return h, nil
}
