package copyengine

import (
	"context"
	"errors"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// readTags reads the source tag (resolving the digest when the request has none) and
// the destination tag at once, and decides how the root goes in: already there under the
// tag, new under the tag (one PUT), or by digest with the tag converged after. missing:
// a request without a digest whose source tag does not exist (then err says so).
func (s *session) readTags(ctx context.Context, digest v1.Hash, res *Result) (v1.Hash, bool, error) {
	var (
		cur     v1.Hash
		found   bool
		present v1.Hash
		destErr error
		absent  error // the source has no such tag (a request without a digest)
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		present, destErr = s.destTag(gctx, res.Tag)
		return nil
	})
	g.Go(func() error {
		if digest == (v1.Hash{}) {
			m, err := s.resolveTag(gctx, res.Tag)
			if isMissing(err) {
				absent = err
				return nil
			}
			if err != nil {
				return err
			}
			cur, found = m.desc.Digest, true
			return nil
		}
		var err error
		cur, found, err = s.headSourceTag(gctx, res.Tag)
		return err
	})
	if err := g.Wait(); err != nil {
		return digest, false, err
	}
	if digest == (v1.Hash{}) {
		if !found {
			// Nothing to copy: a failure for whoever asked for the tag (the CLI), and
			// the answer a delete mirroring needs (SourceTagMissing).
			res.SourceTagMissing = true
			if destErr == nil {
				res.TagDigest = present.String()
			}
			return digest, true, absent
		}
		digest = cur
		res.Digest = digest.String()
		s.log = s.log.With("digest", res.Digest)
	}
	if found && cur == digest {
		s.tagChecked, s.rootDigest = true, digest
		switch {
		case destErr == nil && present == digest:
			s.tagPresent = true
			res.TagDigest = digest.String()
		case isNotFound(destErr):
			// Absent: a new root goes in under the tag. (A tag pointing elsewhere
			// moves in converge, which also reports an IMMUTABLE conflict.)
			s.rootTag = res.Tag
		}
	}
	return digest, false, nil
}

// resolveTag GETs the source manifest by tag: its digest is what the request copies,
// and its bytes are kept for the copy (one request instead of a HEAD and a GET).
func (s *session) resolveTag(ctx context.Context, tag string) (*rawManifest, error) {
	if apiTag(tag) {
		m, err := s.getAPITag(ctx, tag)
		if errors.Is(err, errNoTag) {
			return nil, &Error{Op: "get source tag " + tag, Code: string(transport.ManifestUnknownErrorCode), Status: http.StatusNotFound, Err: errors.New("no such tag")}
		}
		if err == nil {
			s.fetched.Store(m.desc.Digest, m)
		}
		return m, err
	}
	return s.getSource(ctx, s.src.repo.Tag(tag), "get source tag "+tag)
}

// destTag returns what the destination tag points at, or a not-found error. When the
// run has asked about enough tags of the repository, a tag absent from its listing is
// not-found without a HEAD (see tagIndex).
func (s *session) destTag(ctx context.Context, tag string) (v1.Hash, error) {
	if apiTag(tag) {
		return s.headDestTag(ctx, tag)
	}
	list := s.dst.list
	if !s.c.destTags.mayHave(ctx, s.dst.repo.String(), tag, list) {
		return v1.Hash{}, &transport.Error{StatusCode: http.StatusNotFound}
	}
	d, err := s.dst.head(ctx, s.dst.repo.Tag(tag))
	if err != nil {
		return v1.Hash{}, err
	}
	return d.Digest, nil
}
