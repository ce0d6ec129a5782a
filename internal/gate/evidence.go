package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// need is what a set of requirements asks the registry for.
type need struct{ signatures, platformSignatures, scan bool }

func needs(reqs []*rules.Require) need {
	var n need
	for _, r := range reqs {
		if r.Signatures != nil {
			n.signatures = true
			n.platformSignatures = n.platformSignatures || r.Signatures.Platforms == rules.PlatformsAll
		}
		n.scan = n.scan || r.Scan != nil
	}
	return n
}

// imageInfo is what DescribeImages lists of one digest.
type imageInfo struct {
	tags      []string
	subject   string
	pushedAt  time.Time
	mediaType string
}

// evidence is what the source holds of one image: what a decision is made from.
type evidence struct {
	img       Image
	info      imageInfo
	self      v1.Descriptor   // the image's own descriptor: media type, size, digest
	platforms []v1.Descriptor // an index's images, nested indexes followed (attestations left out: index.go)
	// signatures found per subject digest (the image, and its platforms when asked).
	signatures map[string][]*Signature
	// scans per scanned digest: the image, or an index's platforms.
	scans map[string]scanState

	verifyMu sync.Mutex
	verified map[verifyKey]error
}

type verifyKey struct {
	sig     v1.Hash
	signer  *rules.Signer
	subject v1.Hash
}

// source resolves the source registry.
func (g *Gate) source(ctx context.Context, img Image) (*ecraccess.Client, error) {
	return g.c.Resolver.Client(ctx, ecraccess.SourceAccess(img.Repo.Registry, g.c.SourceRole))
}

// collect gathers the evidence n asks for: the listing and the manifest always, then the
// signatures and the scans at once.
func (g *Gate) collect(ctx context.Context, img Image, n need) (*evidence, error) {
	src, err := g.source(ctx, img)
	if err != nil {
		return nil, err
	}
	info, found, err := describe(ctx, src, img)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, &Error{Op: "ecr:DescribeImages", Code: ecraccess.CodeImageNotFound,
			Err: fmt.Errorf("%s is not in the source (deleted since the message was sent?)", img)}
	}
	reg, err := reader(ctx, src, img)
	if err != nil {
		return nil, err
	}
	ev := &evidence{img: img, info: info, signatures: map[string][]*Signature{}, scans: map[string]scanState{}, verified: map[verifyKey]error{}}
	if ev.self, ev.platforms, err = reg.manifest(img.Digest, true); err != nil {
		return nil, err
	}
	var subjects, scanned []v1.Descriptor
	if n.signatures {
		subjects = append(subjects, ev.self)
		if n.platformSignatures {
			subjects = append(subjects, ev.platforms...)
		}
	}
	if n.scan {
		scanned = []v1.Descriptor{ev.self}
		if ev.self.MediaType.IsIndex() {
			scanned = ev.platforms
		}
	}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(4)
	for _, s := range subjects {
		eg.Go(func() error {
			sigs, err := reg.signatures(ectx, s.Digest)
			mu.Lock()
			ev.signatures[s.Digest.String()] = sigs
			mu.Unlock()
			return err
		})
	}
	for _, s := range scanned {
		eg.Go(func() error {
			st, err := scan(ectx, src.API(), img, s.Digest.String())
			mu.Lock()
			ev.scans[s.Digest.String()] = st
			mu.Unlock()
			return err
		})
	}
	return ev, eg.Wait()
}

// describe lists one digest (DescribeImages); found is false when the source has no
// such image.
func describe(ctx context.Context, src *ecraccess.Client, img Image) (imageInfo, bool, error) {
	out, err := src.API().DescribeImages(ctx, &ecr.DescribeImagesInput{
		RegistryId: aws.String(img.Repo.AccountID), RepositoryName: aws.String(img.Repo.Name),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(img.Digest)}},
	})
	if err != nil {
		var nf *ecrtypes.ImageNotFoundException
		var rnf *ecrtypes.RepositoryNotFoundException
		if errors.As(err, &nf) || errors.As(err, &rnf) {
			return imageInfo{}, false, nil
		}
		return imageInfo{}, false, ecraccess.WrapAWS("ecr:DescribeImages", err)
	}
	if len(out.ImageDetails) == 0 {
		return imageInfo{}, false, nil
	}
	d := out.ImageDetails[0]
	return imageInfo{
		tags: d.ImageTags, subject: aws.ToString(d.SubjectManifestDigest),
		pushedAt: aws.ToTime(d.ImagePushedAt), mediaType: aws.ToString(d.ImageManifestMediaType),
	}, true, nil
}

// registryReader reads the source registry (go-containerregistry, with the registry's
// credentials).
type registryReader struct {
	repo name.Repository
	opts []remote.Option
}

// reader reads img's repository of the source registry.
func reader(ctx context.Context, src *ecraccess.Client, img Image) (*registryReader, error) {
	host, err := src.Host(ctx, img.Repo.Name)
	if err != nil {
		return nil, err
	}
	repo, err := name.NewRepository(host + "/" + img.Repo.Name)
	if err != nil {
		return nil, fmt.Errorf("source repository %s/%s: %w", host, img.Repo.Name, err)
	}
	return &registryReader{repo: repo, opts: []remote.Option{
		remote.WithAuth(src.Authenticator()), remote.WithTransport(src.Transport(nil)), remote.WithContext(ctx),
	}}, nil
}

// Error is a failure to collect evidence, with the AWS or registry code; it is a
// retry.Classified.
type Error struct {
	Op        string
	Code      string
	retryable bool
	Err       error
}

func (e *Error) Error() string     { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error     { return e.Err }
func (e *Error) ErrorCode() string { return e.Code }
func (e *Error) Retryable() bool   { return e.retryable }
func (e *Error) notFound() bool {
	return e.Code == "NOT_FOUND" || strings.HasSuffix(e.Code, "_UNKNOWN")
}
func isNotFound(err error) bool     { var e *Error; return errors.As(err, &e) && e.notFound() }
func retryableStatus(code int) bool { return code == 408 || code == 429 || code >= 500 }

// registryError classifies a registry failure: the registry's error code, retryable for
// throttling and 5xx; a failure without an answer as the standard library's.
func registryError(op string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		code := fmt.Sprintf("HTTP_%d", te.StatusCode)
		if len(te.Errors) > 0 {
			code = string(te.Errors[0].Code)
		} else if te.StatusCode == http.StatusNotFound {
			code = "NOT_FOUND"
		}
		return &Error{Op: op, Code: code, retryable: retryableStatus(te.StatusCode), Err: err}
	}
	code, retryable := retry.Classify(err)
	if code == "" {
		code = "Unknown"
	}
	return &Error{Op: op, Code: code, retryable: retryable, Err: err}
}

// Bounds of Parents: the listing pages read, and the indexes whose manifests are read.
const (
	maxParentPages   = 10
	maxParentIndexes = 20
)

// Parents finds the tagged indexes of img's repository pushed since then that list img
// as a platform: a platform's signature or scan arriving re-decides the index it is part
// of. Only indexes pushed since then are read (the most a gate holds), at most
// maxParentIndexes of them.
func (g *Gate) Parents(ctx context.Context, img Image, since time.Time) ([]Lookup, error) {
	src, err := g.source(ctx, img)
	if err != nil {
		return nil, err
	}
	var cands []Lookup
	p := ecr.NewDescribeImagesPaginator(src.API(), &ecr.DescribeImagesInput{
		RegistryId: aws.String(img.Repo.AccountID), RepositoryName: aws.String(img.Repo.Name),
		Filter: &ecrtypes.DescribeImagesFilter{TagStatus: ecrtypes.TagStatusTagged}, MaxResults: aws.Int32(1000),
	})
	for page := 0; p.HasMorePages() && page < maxParentPages; page++ {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, ecraccess.WrapAWS("ecr:DescribeImages", err)
		}
		for _, d := range out.ImageDetails {
			mt := aws.ToString(d.ImageManifestMediaType)
			if (mt == "application/vnd.oci.image.index.v1+json" || mt == "application/vnd.docker.distribution.manifest.list.v2+json") &&
				!aws.ToTime(d.ImagePushedAt).Before(since) && len(cands) < maxParentIndexes {
				cands = append(cands, Lookup{Found: true, Digest: aws.ToString(d.ImageDigest), Tags: d.ImageTags, PushedAt: aws.ToTime(d.ImagePushedAt)})
			}
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	reg, err := reader(ctx, src, img)
	if err != nil {
		return nil, err
	}
	var out []Lookup
	for _, c := range cands {
		_, platforms, err := reg.manifest(c.Digest, false)
		if err != nil {
			return nil, err
		}
		for _, pl := range platforms {
			if pl.Digest.String() == img.Digest {
				out = append(out, c)
				break
			}
		}
	}
	return out, nil
}
