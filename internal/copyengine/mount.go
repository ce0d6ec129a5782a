package copyengine

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Blob mounting: a blob that another repository of the destination registry already
// holds is mounted from it (POST …/blobs/uploads/?mount=<digest>&from=<repository>,
// answered 201), not uploaded again. ECR does this since January 2026 when the registry's
// BLOB_MOUNTING account setting is ENABLED, within one registry (account and region),
// between repositories with the same encryption type and key ("Blob mounting in Amazon
// ECR", https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html), when
// the caller may read the `from` repository's layers (ecr:GetDownloadUrlForLayer, same
// page), and only for a blob that a manifest of the `from` repository references; for any
// other it answers 202 and starts a normal upload (aws/containers-roadmap#2860).
//
// So the engine remembers, per mount scope — destination registry, encryption and the
// identity that copies — which repositories hold a manifest referencing each blob: those
// it wrote there, or found there while copying (blobIndex, index.go, kept by the Engine
// across runs and bounded). Image copies into several repositories of one scope at once
// wait for the one already moving most of the same bytes, so the shared blobs go over the
// network once and are mounted everywhere else (flightTable, flight.go). A mount the
// registry answers with 202 goes on as the upload that answer started; any other refusal
// or failure falls back to a normal upload in the same attempt; a 201 is checked with a
// HEAD before the blob counts as there, and a HEAD that fails then starts the attempt over.

// Mounting is what the engine may do to avoid uploading blobs into a destination endpoint.
type Mounting struct {
	// Enabled: the destination registry mounts blobs across its repositories (ECR's
	// BLOB_MOUNTING account setting is ENABLED).
	Enabled bool
	// Encryption names the destination repository's encryption, type and key (for ECR,
	// "AES256" or "KMS <key ARN>"). Blobs are only mounted between repositories whose
	// Encryption is the same; empty (unknown) never mounts.
	Encryption string
	// Identity names who copies (for ECR, the role assumed in the destination account).
	// Blobs are only mounted from repositories that copies by the same identity wrote or
	// found: another identity may be allowed to read other repositories (each stack's
	// role its own prefix). Empty: the Endpoint's Auth stands for it (the same
	// Authenticator value, the same identity); an Auth that cannot be compared never
	// mounts.
	Identity string
}

// mountScope is where an endpoint's blobs may be mounted from: the repositories of its
// registry with its encryption, as its identity knows them.
type mountScope struct {
	registry, encryption, identity string
	auth                           any // the Endpoint's Auth, when Identity is empty
}

// mountScope returns the endpoint's scope; false when there is none (the encryption is
// unknown, or who copies cannot be told apart).
func (e *endpoint) mountScope() (mountScope, bool) {
	m := e.mounting
	if m.Encryption == "" {
		return mountScope{}, false
	}
	sc := mountScope{registry: e.repo.RegistryStr(), encryption: m.Encryption, identity: m.Identity}
	if sc.identity == "" {
		if !comparable(e.auth) {
			return mountScope{}, false
		}
		sc.auth = e.auth
	}
	return sc, true
}

// wouldMount: with mounting off, whether a registry mounting blobs would have mounted the
// blob this copy uploaded — another repository of the scope holds it (the index), or a
// copy into another one, in flight, announced it first (it uploads it, the others would
// mount it: counted for each repository after the first).
func (s *session) wouldMount(d v1.Hash) bool {
	if s.dst.mounting.Enabled {
		return false
	}
	scope, ok := s.dst.mountScope()
	if !ok {
		return false
	}
	repo := s.dst.repo.RepositoryStr()
	if _, ok := s.c.index.source(scope, repo, d); ok {
		return true
	}
	return s.c.flights.movedElsewhere(scope, repo, d)
}

// tryMount asks the destination to mount the blob from a repository the index names, when
// the destination mounts blobs. mounted: the blob is there now — a HEAD says so, not only
// the 201 — and n is its size. Otherwise loc is the upload the registry started instead
// (202), where the blob's PUT goes; or "" when there was no mount to ask for or it was
// refused or failed in any other way, and a POST starts the upload as usual (no attempt is
// spent on it). err: the HEAD after a 201 failed — the blob may well be there, so the
// attempt starts over (its HEAD finds it) rather than upload it in full.
func (s *session) tryMount(ctx context.Context, client *http.Client, base *url.URL, desc v1.Descriptor, st *pushState) (loc string, mounted bool, n int64, err error) {
	scope, ok := s.dst.mountScope()
	if !s.dst.mounting.Enabled || !ok {
		return "", false, 0, nil
	}
	repo := s.dst.repo.RepositoryStr()
	from, ok := s.c.index.source(scope, repo, desc.Digest)
	if !ok {
		return "", false, 0, nil
	}
	log := s.log.With("blob", desc.Digest.String(), "from", from)
	u := base.ResolveReference(&url.URL{Path: fmt.Sprintf("/v2/%s/blobs/uploads/", repo),
		RawQuery: url.Values{"mount": {desc.Digest.String()}, "from": {from}}.Encode()})
	resp, err := do(ctx, client, http.MethodPost, u.String())
	if err != nil {
		log.Debug("blob mount failed; uploading", "err", redact(err))
		return "", false, 0, nil
	}
	defer discard(resp)
	switch code := resp.StatusCode; {
	case code == http.StatusCreated:
		st.mounted = true
		present, size, err := s.destHasBlob(ctx, client, base, desc.Digest)
		if err != nil {
			return "", false, 0, err
		}
		if !present {
			s.c.index.forget(scope, from, desc.Digest)
			log.Warn("the destination answered a blob mount with 201 and does not have the blob; uploading it")
			return "", false, 0, nil
		}
		if desc.Size > 0 {
			size = desc.Size
		}
		s.c.report(Progress{Source: s.src.repo.String(), Destination: s.dst.repo.String(), Blob: desc.Digest.String(), Size: size, Event: BlobMounted})
		return "", true, size, nil
	case code == http.StatusAccepted:
		// Not mounted (the image there was deleted, or the repository; ECR no longer has
		// the blob referenced there): the upload the answer started is used.
		s.c.index.forget(scope, from, desc.Digest)
		if loc, err = uploadLocation(resp, desc.Digest); err != nil {
			log.Debug("blob mount answered 202 without a usable Location; uploading", "err", err)
			return "", false, 0, nil
		}
		return loc, false, 0, nil
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		// Refused (403: not allowed to read it there, say): asking again from there
		// would be refused again — unless the refusal is the destination's (its writes
		// denied), which the plain upload that follows tells: the source is forgotten
		// only once that upload is accepted (mountRefused). A refusal that may pass (408,
		// 429, 5xx) keeps it.
		st.refusedFrom = from
	}
	log.Debug("blob mount refused; uploading", "status", resp.StatusCode)
	return "", false, 0, nil
}

// abandonTimeout bounds the request that cancels an unused upload (abandonUpload).
const abandonTimeout = 5 * time.Second

// abandonUpload cancels an upload a mount's 202 started that this attempt does not use
// (the time left does not fit it, the source failed, the wait for a transfer slot ended):
// DELETE on its location ("Cancel blob upload", DELETE /v2/<name>/blobs/uploads/<uuid>,
// https://docs.docker.com/reference/api/registry/latest/operations/CancelBlobUpload/).
// Whether ECR honours it is not documented (a guess): it is sent once, briefly, its
// answer ignored; an upload left open expires on the registry's side.
func (s *session) abandonUpload(ctx context.Context, client *http.Client, loc string) {
	u, err := url.Parse(loc)
	if loc == "" || err != nil {
		return
	}
	q := u.Query()
	q.Del("digest") // added for the PUT (uploadLocation)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	if resp, err := do(ctx, client, http.MethodDelete, u.String()); err == nil {
		discard(resp)
	}
}

// mountRefused forgets the repository a mount of digest was refused from, now that a
// plain upload into the same repository was accepted: the refusal was the mount's (the
// repository named may not be read), not the destination's, whose refusal of every write
// says nothing about the source and must not make other copies upload what they could
// mount.
func (s *session) mountRefused(st *pushState, digest v1.Hash) {
	if st.refusedFrom == "" {
		return
	}
	if scope, ok := s.dst.mountScope(); ok {
		s.c.index.forget(scope, st.refusedFrom, digest)
	}
	st.refusedFrom = ""
}
