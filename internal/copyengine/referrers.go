package copyengine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

const (
	maxReferrerPages = 100
	maxIndexBytes    = 4 << 20 // ECR's manifest size limit
)

// cosignSuffixes are the tag-schema artifacts cosign attaches to sha256-<hex>.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// copyReferrers copies what refers to subject: OCI 1.1 referrers (or the
// source's sha256-<hex> fallback index when it has no referrers API) and
// cosign-style tags. depth is the referrer depth being copied (1 = direct
// referrers of the requested digest); copyGraph recurses to the bound.
func (s *session) copyReferrers(ctx context.Context, subject v1.Hash, depth int) error {
	if _, seen := s.listed.LoadOrStore(subject, true); seen {
		return nil
	}
	// The referrers listing and the cosign tag probes are independent: run them at once.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.copyListedReferrers(gctx, subject, depth) })
	for _, suffix := range cosignSuffixes {
		tag := fallbackTag(subject) + suffix
		g.Go(func() error { return s.copyCosignTag(gctx, tag, depth) })
	}
	return g.Wait()
}

// copyListedReferrers copies what the referrers API (or its fallback index) lists for
// subject.
func (s *session) copyListedReferrers(ctx context.Context, subject v1.Hash, depth int) error {
	refs, fallback, err := s.listReferrers(ctx, subject)
	if err != nil {
		return err
	}
	refused := false
	for _, d := range refs {
		ok, err := s.admitReferrer(ctx, d.Digest, "referrer of "+subject.String())
		if err != nil {
			return err
		}
		if !ok {
			refused = true
			continue
		}
		wrote, err := s.copyGraph(ctx, d, depth)
		if err != nil {
			return err
		}
		if wrote {
			s.referrersCopied.Add(1)
		}
	}
	if fallback == nil || refused {
		// Not when a referrer the fallback index lists was left out: the destination
		// would refuse it.
		return nil
	}
	// The source keeps referrers in a fallback index; copy it verbatim (its children
	// are already there) and tag it like the source.
	if _, err := s.copyGraph(ctx, *fallback, depth); err != nil {
		return err
	}
	_, err = s.converge(ctx, fallbackTag(subject), fallback.Digest)
	return err
}

// copyCosignTag copies the image a cosign tag (sha256-<digest>.sig, .att, .sbom) names
// and sets the tag.
func (s *session) copyCosignTag(ctx context.Context, tag string, depth int) error {
	if !s.mayHaveSourceTag(ctx, tag) {
		return nil
	}
	cur, found, err := s.headSourceTag(ctx, tag)
	if err != nil || !found {
		return err
	}
	if ok, err := s.admitReferrer(ctx, cur, tag); err != nil || !ok {
		return err
	}
	wrote, err := s.copyGraph(ctx, v1.Descriptor{Digest: cur}, depth)
	if err != nil {
		return err
	}
	if wrote {
		s.referrersCopied.Add(1)
	}
	_, err = s.converge(ctx, tag, cur)
	return err
}

// fallbackTag is the tag schema's name for subject's referrers: sha256-<hex> (cosign
// appends .sig, .att, .sbom).
func fallbackTag(subject v1.Hash) string { return strings.Replace(subject.String(), ":", "-", 1) }

// listReferrers lists the source's referrers of subject.
//
// Written by hand (like the blob transfers in upload.go): ggcr's remote.Referrers reads only
// the first page and ignores `Link: <...>; rel="next"`, so a subject with many
// signatures/attestations would silently lose some. Like ggcr, a 404/400/406
// or a non-index answer means "no referrers API": fall back to the
// sha256-<hex> tag schema, returned as fallback so it can be copied too.
func (s *session) listReferrers(ctx context.Context, subject v1.Hash) ([]v1.Descriptor, *v1.Descriptor, error) {
	op := "list source referrers of " + subject.String()
	host := s.src.repo.RegistryStr()
	s.c.runMu.Lock()
	unsupported := s.c.noReferrersAPI[host]
	s.c.runMu.Unlock()
	if unsupported {
		return s.fallbackReferrers(ctx, subject)
	}
	cl, err := s.src.use(ctx)
	if err != nil {
		return nil, nil, classify(op, onSource, err)
	}
	repo := s.src.repo
	next := &url.URL{
		Scheme: repo.Scheme(),
		Host:   repo.RegistryStr(),
		Path:   fmt.Sprintf("/v2/%s/referrers/%s", repo.RepositoryStr(), subject),
	}
	var out []v1.Descriptor
	for page := 0; next != nil; page++ {
		if page == maxReferrerPages {
			return nil, nil, &Error{Op: op, Code: "TOO_MANY_PAGES", Err: fmt.Errorf("more than %d pages", maxReferrerPages)}
		}
		var (
			im        *v1.IndexManifest
			link      *url.URL
			supported bool
		)
		err := readRetry(ctx, s.c.policy, func(ctx context.Context) error {
			var err error
			im, link, supported, err = s.referrersPage(ctx, cl.http, next)
			return err
		})
		if err != nil {
			return nil, nil, classify(op, onSource, err)
		}
		if !supported {
			if page > 0 {
				return nil, nil, &Error{Op: op, Code: "UNSUPPORTED", Transient: true, Err: fmt.Errorf("page %d is not an image index", page)}
			}
			s.c.runMu.Lock()
			s.c.noReferrersAPI[host] = true // for the rest of the run
			s.c.runMu.Unlock()
			return s.fallbackReferrers(ctx, subject)
		}
		out = append(out, im.Manifests...)
		next = link
	}
	return out, nil, nil
}

func (s *session) referrersPage(ctx context.Context, client *http.Client, u *url.URL) (im *v1.IndexManifest, next *url.URL, supported bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, false, err
	}
	req.Header.Set("Accept", string(types.OCIImageIndex))
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, false, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK, http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable); err != nil {
		return nil, nil, false, err
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || ct != string(types.OCIImageIndex) {
		return nil, nil, false, nil
	}
	im = &v1.IndexManifest{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxIndexBytes)).Decode(im); err != nil {
		return nil, nil, false, &Error{Op: "decode referrers page", Code: string(transport.ManifestInvalidErrorCode), Transient: true, Err: err}
	}
	next, err = nextLink(u, resp.Header.Values("Link"))
	return im, next, true, err
}

// nextLink finds rel="next" in Link headers, resolved against the current
// page. Links to another host are refused: the client carries credentials.
func nextLink(cur *url.URL, headers []string) (*url.URL, error) {
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			isNext := false
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
					isNext = true
				}
			}
			if !isNext {
				continue
			}
			u, err := cur.Parse(strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">"))
			if err != nil {
				return nil, &Error{Op: "parse referrers Link", Code: "INVALID_LINK", Err: err}
			}
			if u.Host != cur.Host || u.Scheme != cur.Scheme {
				return nil, &Error{Op: "parse referrers Link", Code: "INVALID_LINK", Err: fmt.Errorf("next page on another host or scheme: %s://%s", u.Scheme, u.Host)}
			}
			return u, nil
		}
	}
	return nil, nil
}

// fallbackReferrers reads the source's sha256-<hex> referrers tag, if any.
func (s *session) fallbackReferrers(ctx context.Context, subject v1.Hash) ([]v1.Descriptor, *v1.Descriptor, error) {
	tag := fallbackTag(subject)
	if !s.mayHaveSourceTag(ctx, tag) {
		return nil, nil, nil
	}
	h, found, err := s.headSourceTag(ctx, tag)
	if err != nil || !found {
		return nil, nil, err
	}
	m, err := s.fetch(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	if !m.desc.MediaType.IsIndex() {
		return nil, nil, nil // a tag that merely looks like the schema
	}
	im, err := v1.ParseIndexManifest(strings.NewReader(string(m.raw)))
	if err != nil {
		return nil, nil, &Error{Op: "parse fallback referrers index", Code: string(transport.ManifestInvalidErrorCode), Err: err}
	}
	return im.Manifests, &v1.Descriptor{Digest: h, MediaType: m.desc.MediaType, Size: m.desc.Size}, nil
}

// mayHaveSourceTag says whether the source repository may have tag (a cosign or
// fallback-schema tag): asked of every subject, answered from one listing once the run
// has probed the repository a few times (see tagIndex).
func (s *session) mayHaveSourceTag(ctx context.Context, tag string) bool {
	return s.c.sourceTags.mayHave(ctx, s.src.repo.String(), tag, s.src.list)
}
