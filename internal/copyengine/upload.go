package copyengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// pushBlob makes one blob present in the destination repository: a HEAD, and only when
// the blob is absent a monolithic upload — a POST that opens the upload and one PUT
// carrying the whole body, streamed from the source (OCI distribution spec, "Pushing a
// blob monolithically", POST then PUT:
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-monolithically).
//
// This is written by hand rather than with ggcr's Pusher.Upload, which sends POST,
// PATCH and PUT: the monolithic form is one request (and, on ECR, one UploadLayerPart
// call) less per blob, and it is the form known to work on ECR for any size — ECR
// refuses chunked parts under 5 MB and has dropped data from multi-PATCH uploads
// (aws/containers-roadmap#2831; KitOps moved ECR pushes to a monolithic PUT, tested
// with a 15 GB layer, kitops-ml/kitops PR #822).
//
// The whole sequence is retried with the engine's policy (retry.Do), as ggcr retries
// uploadOne: a retryable failure of any of its requests — the HEAD, the POST, the
// source download, the PUT — starts over with a HEAD (the previous PUT may have landed)
// and a fresh source stream. Its requests are therefore sent once each by the retry
// transport (withoutRetry). When the destination mounts blobs and another of its
// repositories holds this one, the POST asks for a mount first (tryMount, mount.go).
//
// It reports what this call did — found the blob there, uploaded or mounted it — and its
// size: desc.Size, or when that is unknown (a Docker schema 1 manifest declares none) what
// the registry said — the destination's HEAD when it has the blob, else the source
// download's Content-Length. The source's blobs are never HEADed: that needs
// ecr:BatchCheckLayerAvailability there, which a read-only source policy need not grant,
// and the download that follows says the same.
func (s *session) pushBlob(ctx context.Context, desc v1.Descriptor) (fate blobFate, size int64, err error) {
	var st pushState
	policy := s.c.policy
	policy.RetryIf = func(err error) bool {
		// Time only runs out: an upload that does not fit what is left of the run is
		// for the next delivery, not for another attempt now.
		code, retryable := retry.Classify(err)
		return retryable && code != CodeNoTimeLeft
	}
	err = retry.Do(ctx, policy, func(ctx context.Context) error {
		cl, err := s.dst.use(ctx)
		if err != nil {
			return classify("authenticate to destination", onDest, err)
		}
		f, n, err := s.pushBlobOnce(withoutRetry(ctx), cl.http, desc, &st)
		if err == nil {
			fate, size = st.settle(f), n
		}
		return err
	})
	return fate, size, err
}

// blobFate is what pushing a blob came to.
type blobFate int

const (
	blobPresent  blobFate = iota // the destination had it
	blobUploaded                 // uploaded by this call
	blobMounted                  // mounted from another repository of the registry
)

// pushState is what the attempts of one push did so far: a blob a retry finds present was
// uploaded (or mounted) by an earlier attempt whose answer was lost.
type pushState struct {
	sent    bool // a PUT went out
	mounted bool // a mount was answered 201
	// refusedFrom: the repository a mount from was refused with a 4xx, to forget as the
	// blob's source once a plain upload into the same repository is accepted (the
	// refusal was then the mount's, not the destination's).
	refusedFrom string
}

func (p pushState) settle(f blobFate) blobFate {
	switch {
	case f != blobPresent:
		return f
	case p.sent:
		return blobUploaded
	case p.mounted:
		return blobMounted
	}
	return blobPresent
}

// pushBlobOnce is one attempt: what it came to, and the blob's size (see pushBlob).
func (s *session) pushBlobOnce(ctx context.Context, client *http.Client, desc v1.Descriptor, st *pushState) (blobFate, int64, error) {
	op := "upload blob " + desc.Digest.String()
	repo := s.dst.repo
	base := &url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr()}

	if present, n, err := s.destHasBlob(ctx, client, base, desc.Digest); err != nil || present {
		if desc.Size > 0 {
			n = desc.Size
		}
		if present {
			event := BlobSkipped
			if st.settle(blobPresent) == blobMounted {
				event = BlobMounted // by an earlier attempt, whose check failed
			}
			s.c.report(Progress{Source: s.src.repo.String(), Destination: repo.String(), Blob: desc.Digest.String(), Size: n, Event: event})
		}
		return blobPresent, n, err
	}
	// A mount moves no bytes: it does not wait for a transfer slot, nor is it weighed.
	loc, mounted, n, err := s.tryMount(ctx, client, base, desc, st)
	if mounted || err != nil {
		return blobMounted, n, err
	}

	select {
	case s.c.sem <- struct{}{}:
	case <-ctx.Done():
		s.abandonUpload(ctx, client, loc)
		return blobUploaded, 0, classify(op, onDest, ctx.Err())
	}
	defer func() { <-s.c.sem }()

	src, size, err := s.sourceForUpload(ctx, desc)
	if err != nil {
		s.abandonUpload(ctx, client, loc)
		return blobUploaded, size, err
	}
	if loc == "" {
		if loc, err = s.startUpload(ctx, client, base, desc.Digest); err != nil {
			src.close()
			return blobUploaded, size, err
		}
		s.mountRefused(st, desc.Digest)
	}
	o := <-src
	if o.err != nil {
		s.abandonUpload(ctx, client, loc)
		return blobUploaded, size, o.err
	}
	return blobUploaded, size, s.putBlob(ctx, client, loc, o.body, desc.Digest, size, &st.sent)
}

// sourceDownload is a source blob download started for an upload.
type sourceDownload chan openedBlob

type openedBlob struct {
	body io.ReadCloser
	size int64 // Content-Length, -1 unknown
	err  error
}

func (d sourceDownload) close() {
	if o := <-d; o.body != nil {
		o.body.Close()
	}
}

// sourceForUpload starts the source download of an upload and weighs the upload against
// the deadline (fitUpload). The download of a blob of known size runs while the upload is
// opened: both are a round trip, and the PUT needs both. A blob of unknown size is
// downloaded first: its answer says the size, which the upload is weighed by and declares.
func (s *session) sourceForUpload(ctx context.Context, desc v1.Descriptor) (sourceDownload, int64, error) {
	src := make(sourceDownload, 1)
	open := func() {
		body, n, err := s.openSourceBlob(ctx, desc.Digest)
		src <- openedBlob{body, n, err}
	}
	if desc.Size > 0 {
		if err := s.fitUpload(ctx, desc.Size); err != nil {
			return nil, desc.Size, err
		}
		go open()
		return src, desc.Size, nil
	}
	open()
	o := <-src
	if o.err != nil {
		return nil, 0, o.err
	}
	if o.size < 0 {
		o.body.Close()
		return nil, 0, &Error{Op: "get source blob " + desc.Digest.String(), Code: string(transport.SizeInvalidErrorCode),
			Err: errors.New("the manifest declares no size and the download no Content-Length")}
	}
	if err := s.fitUpload(ctx, o.size); err != nil {
		o.body.Close()
		return nil, o.size, err
	}
	src <- o
	return src, o.size, nil
}

// putBlob sends body (the source download) to the upload's location in one PUT of size
// bytes, counted on the link, and classifies a deadline cut (cutUpload).
func (s *session) putBlob(ctx context.Context, client *http.Client, loc string, src io.ReadCloser, digest v1.Hash, size int64, sent *bool) error {
	op := "upload blob " + digest.String()
	progress := Progress{Source: s.src.repo.String(), Destination: s.dst.repo.String(), Blob: digest.String(), Size: size}
	body := &linkReader{ReadCloser: s.c.counting(src, progress), link: s.c.link.host(s.dst.repo.RegistryStr())}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc, body)
	if err != nil {
		src.Close()
		return classify(op, onDest, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	*sent = true
	progress.Event = BlobStarted
	s.c.report(progress)
	resp, err := client.Do(req)
	body.link.end(&body.u) // the transport may close the body later: the meter must not wait
	if err != nil {
		return s.cutUpload(ctx, size, classify(op, onDest, err))
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusCreated); err != nil {
		return classify(op, onDest, err)
	}
	progress.Event = BlobDone
	s.c.report(progress)
	return nil
}

// destHasBlob HEADs the blob in the destination repository; size is its Content-Length
// when present (-1 unknown).
func (s *session) destHasBlob(ctx context.Context, client *http.Client, base *url.URL, digest v1.Hash) (present bool, size int64, _ error) {
	op := "head destination blob " + digest.String()
	blobURL := base.ResolveReference(&url.URL{Path: fmt.Sprintf("/v2/%s/blobs/%s", s.dst.repo.RepositoryStr(), digest)})
	resp, err := do(ctx, client, http.MethodHead, blobURL.String())
	if err != nil {
		return false, 0, classify(op, onDest, err)
	}
	err = transport.CheckError(resp, http.StatusOK, http.StatusNotFound)
	resp.Body.Close()
	if err != nil {
		return false, 0, classify(op, onDest, err)
	}
	return resp.StatusCode == http.StatusOK, resp.ContentLength, nil
}

// startUpload opens an upload session (POST) and returns where to PUT the blob.
func (s *session) startUpload(ctx context.Context, client *http.Client, base *url.URL, digest v1.Hash) (string, error) {
	op := "upload blob " + digest.String()
	start := base.ResolveReference(&url.URL{Path: fmt.Sprintf("/v2/%s/blobs/uploads/", s.dst.repo.RepositoryStr())})
	resp, err := do(ctx, client, http.MethodPost, start.String())
	if err != nil {
		if code, _ := retry.Classify(err); code == retry.CodeEOF {
			// ECR closes the connection of an upload into a repository that does not
			// exist (bitnami/charts-syncer PR #171; dotnet/sdk-container-builds PR #279):
			// ask once whether that is it, so a missing repository is reported as such
			// instead of retried as a network fault.
			if missing := s.destRepositoryMissing(ctx, client); missing != nil {
				return "", missing
			}
		}
		return "", classify(op, onDest, err)
	}
	err = transport.CheckError(resp, http.StatusAccepted)
	resp.Body.Close()
	if err != nil {
		return "", classify(op, onDest, err)
	}
	loc, err := uploadLocation(resp, digest)
	if err != nil {
		return "", &Error{Op: op, Code: string(transport.BlobUploadInvalidErrorCode), Status: resp.StatusCode, Err: err}
	}
	return loc, nil
}

// destRepositoryMissing asks the destination for one tag of the repository; a
// NAME_UNKNOWN answer is returned as a permanent error (the caller decides whether the
// repository will be created before a retry), anything else as nil.
func (s *session) destRepositoryMissing(ctx context.Context, client *http.Client) error {
	repo := s.dst.repo
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/tags/list", repo.RepositoryStr()), RawQuery: "n=1"}
	resp, err := do(ctx, client, http.MethodGet, u.String())
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	err = transport.CheckError(resp, http.StatusOK)
	var terr *transport.Error
	if errors.As(err, &terr) && len(terr.Errors) > 0 && terr.Errors[0].Code == transport.NameUnknownErrorCode {
		return &Error{Op: "upload blob", Code: string(transport.NameUnknownErrorCode), Status: terr.StatusCode, AtDest: true,
			Err: fmt.Errorf("the destination repository %s does not exist (the registry closed the connection when the upload was opened)", repo.RepositoryStr())}
	}
	return nil
}

// openSourceBlob GETs a blob from the source (following a redirect to storage, as ECR
// answers) and returns its body and Content-Length (-1 unknown). The body is streamed
// into the destination's PUT as is: the destination checks the digest when the upload is
// committed (PUT ?digest=; ECR answers a mismatch with InvalidLayerException,
// API_CompleteLayerUpload.html; distribution with DIGEST_INVALID) and the PUT's
// Content-Length holds it to the manifest's size, so hashing it here as well (as ggcr's
// layer reader does) would only spend CPU — half of the copy's CPU for a large image
// (docs/PERFORMANCE.md).
func (s *session) openSourceBlob(ctx context.Context, h v1.Hash) (io.ReadCloser, int64, error) {
	op := "get source blob " + h.String()
	cl, err := s.src.use(ctx)
	if err != nil {
		return nil, 0, classify(op, onSource, err)
	}
	resp, err := do(ctx, cl.http, http.MethodGet, s.sourceBlobURL(h))
	if err != nil {
		return nil, 0, classify(op, onSource, err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, 0, classify(op, onSource, err)
	}
	return resp.Body, resp.ContentLength, nil
}

func (s *session) sourceBlobURL(h v1.Hash) string {
	repo := s.src.repo
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), h)}
	return u.String()
}

func do(ctx context.Context, client *http.Client, method, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}

// uploadLocation is where the blob's PUT goes: the POST's Location, resolved against
// the request (registries may answer a bare path), with ?digest= added to whatever
// query the registry put there. A Location on another host or scheme is refused: the
// client carries the destination's credentials, and the registries we target (ECR among
// them) upload to themselves.
func uploadLocation(resp *http.Response, digest v1.Hash) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("the registry started an upload without a Location")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("upload Location is not a URL: %w", redact(err))
	}
	u = resp.Request.URL.ResolveReference(u)
	if u.Host != resp.Request.URL.Host || u.Scheme != resp.Request.URL.Scheme {
		return "", fmt.Errorf("upload Location on another host or scheme (%s://%s) refused", u.Scheme, u.Host)
	}
	q := u.Query()
	q.Set("digest", digest.String())
	u.RawQuery = q.Encode()
	return u.String(), nil
}
