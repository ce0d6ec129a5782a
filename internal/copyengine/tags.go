package copyengine

import (
	"context"
	"errors"
	"fmt"
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
	t, err := s.readBothTags(ctx, res.Tag, digest)
	if err != nil {
		return digest, false, err
	}
	if digest == (v1.Hash{}) {
		if !t.found {
			// Nothing to copy: a failure for whoever asked for the tag (the CLI), and
			// the answer a delete mirroring needs (SourceTagMissing).
			res.SourceTagMissing = true
			if t.destErr == nil {
				res.TagDigest = t.present.String()
			}
			return digest, true, t.absent
		}
		digest = t.cur
		res.Digest = digest.String()
		s.log = s.log.With("digest", res.Digest)
	}
	if t.found && t.cur == digest {
		s.tagChecked, s.rootDigest = true, digest
		switch {
		case t.destErr == nil && t.present == digest:
			s.tagPresent = true
			res.TagDigest = digest.String()
		case isNotFound(t.destErr):
			// Absent: a new root goes in under the tag. (A tag pointing elsewhere
			// moves in converge, which also reports an IMMUTABLE conflict.)
			s.rootTag = res.Tag
		}
	}
	return digest, false, nil
}

// tagsRead is what readBothTags found: where the source tag points (cur, if found) and
// the destination tag (present, or destErr).
type tagsRead struct {
	cur     v1.Hash
	found   bool
	absent  error // the source has no such tag (a request without a digest)
	present v1.Hash
	destErr error
}

// readBothTags reads the source tag — resolving it with a GET when digest is zero (a
// request without a digest), a HEAD otherwise — and the destination tag, at once.
func (s *session) readBothTags(ctx context.Context, tag string, digest v1.Hash) (tagsRead, error) {
	var t tagsRead
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		t.present, t.destErr = s.destTag(gctx, tag)
		return nil
	})
	g.Go(func() error {
		if digest == (v1.Hash{}) {
			m, err := s.resolveTag(gctx, tag)
			if isMissing(err) {
				t.absent = err
				return nil
			}
			if err != nil {
				return err
			}
			t.cur, t.found = m.desc.Digest, true
			return nil
		}
		var err error
		t.cur, t.found, err = s.headSourceTag(gctx, tag)
		return err
	})
	return t, g.Wait()
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

// headSourceTag returns what the source tag points at now.
func (s *session) headSourceTag(ctx context.Context, tag string) (v1.Hash, bool, error) {
	if apiTag(tag) {
		m, err := s.getAPITag(ctx, tag)
		if errors.Is(err, errNoTag) {
			return v1.Hash{}, false, nil
		}
		if err != nil {
			return v1.Hash{}, false, err
		}
		s.fetched.Store(m.desc.Digest, m)
		return m.desc.Digest, true, nil
	}
	d, err := s.src.head(ctx, s.src.repo.Tag(tag))
	if isNotFound(err) {
		return v1.Hash{}, false, nil
	}
	if err != nil {
		return v1.Hash{}, false, classify("head source tag "+tag, onSource, err)
	}
	return d.Digest, true, nil
}

// converge points the destination tag where the source tag points now: at want if it
// still points there, otherwise at the source's current digest, copied first. It returns
// a non-empty stale reason when the source had moved on from want (a late event).
// After writing it re-checks the source, and if the tag moved meanwhile follows it
// again, so the destination never ends behind.
//
// A stale event is no reason to leave the destination tag alone: it may be the
// redelivery of an invocation that was killed after writing an older digest under the
// tag and before its re-check, while another wrote the newer one first — only this
// handler can still repair that.
func (s *session) converge(ctx context.Context, tag string, want v1.Hash) (tr tagResult, err error) {
	ctx, unlock, skip, err := s.c.lockTag(ctx, s.dst.repo.Tag(tag).String())
	if err != nil {
		return tr, classify("lock tag "+tag, onDest, err)
	}
	defer unlock()
	if skip {
		// Another convergence holds the tag (this call's own, further up, or one that may
		// be waiting for ours): it sets the tag, after its own re-check (lockTag).
		return tr, nil
	}
	start := 0
	if s.rootTagged.Load() && want == s.rootDigest {
		// Checked before, written and verified with the root manifest: what is left
		// is the re-check of the source.
		start, tr.at = 1, want
	}
	return s.followSource(ctx, tag, want, start, tr)
}

// followSource is converge's rounds, under the tag lock from round start on: each reads
// the source tag (unless run read it just before), copies and follows a digest it moved
// to, and sets the destination tag, until a re-check finds the source where the
// destination tag was put.
func (s *session) followSource(ctx context.Context, tag string, want v1.Hash, start int, tr tagResult) (tagResult, error) {
	for round := start; ; round++ {
		cur, found := want, true
		if round > 0 || !s.tagChecked || want != s.rootDigest {
			var err error
			if cur, found, err = s.headSourceTag(ctx, tag); err != nil {
				return tr, err
			}
		}
		switch {
		case !found && round == 0:
			// Deleted at the source: mirrorDeletes decides (the caller).
			tr.stale, tr.missing = "source tag no longer exists", true
			return tr, nil
		case !found:
			tr.missing = true // deleted after we wrote it
			return tr, nil
		case cur != want && s.pinned:
			if round == 0 {
				tr.stale = "source tag now points at " + cur.String() + "; a gated copy tags only the digest its gate decided"
			}
			return tr, nil
		case cur != want:
			if round > s.c.tagRounds {
				return tr, &Error{Op: "converge tag " + tag, Code: CodeTagUnstable, Transient: true,
					Err: fmt.Errorf("source tag still moving after %d rounds (now %s)", s.c.tagRounds, cur)}
			}
			if round == 0 {
				tr.stale = "source tag now points at " + cur.String() + "; destination tag follows it"
			}
			s.log.Info("source tag moved; following it", "tag", tag, "from", want.String(), "to", cur.String())
			if _, err := s.copyGraph(ctx, v1.Descriptor{Digest: cur}, 0); err != nil {
				return tr, err
			}
			want = cur
		case round > 0:
			return tr, nil // source still where we put the destination
		}
		wrote, err := s.setDestTag(ctx, tag, want)
		if err != nil {
			return tr, err
		}
		tr.at = want
		if !wrote {
			return tr, nil // nothing written, so nothing to re-check
		}
	}
}

// tagResult is what converge did to one tag.
type tagResult struct {
	stale   string  // why the event was stale, when it was
	missing bool    // the source no longer has the tag
	at      v1.Hash // where the destination tag was last seen or put
}

// isMissing: the source answered that the manifest (or its repository) does not exist.
func isMissing(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound && !e.AtDest
}

// setDestTag HEADs the destination tag first — IMMUTABLE repositories refuse
// re-pushing an existing tag even with the same digest — and PUTs only when it
// points elsewhere or nowhere.
func (s *session) setDestTag(ctx context.Context, tag string, want v1.Hash) (bool, error) {
	at, err := s.headDestTag(ctx, tag)
	switch {
	case err == nil && at == want:
		return false, nil
	case err != nil && !isNotFound(err):
		return false, classify("head destination tag "+tag, onDest, err)
	}
	m, err := s.manifestBytes(ctx, want)
	if err != nil {
		return false, err
	}
	if err := s.putTag(ctx, tag, m, "put destination tag"); err != nil {
		return false, err
	}
	s.tagWrites.Add(1)
	s.c.destTags.add(s.dst.repo.String(), tag)
	return true, s.verifyTag(ctx, tag, want)
}

// headDestTag returns what the destination tag points at (a HEAD, or the ECR API for a
// tag the registry cannot carry), or a not-found error.
func (s *session) headDestTag(ctx context.Context, tag string) (v1.Hash, error) {
	if apiTag(tag) {
		return s.destAPITag(ctx, tag)
	}
	d, err := s.dst.head(ctx, s.dst.repo.Tag(tag))
	if err != nil {
		return v1.Hash{}, err
	}
	return d.Digest, nil
}
