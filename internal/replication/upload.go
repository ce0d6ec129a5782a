package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// pushBlob makes one blob present in the destination repository: a HEAD, and only when
// the blob is absent a monolithic upload — a POST that opens the upload and one PUT
// carrying the whole body, streamed from open() (OCI distribution spec, "Pushing a blob
// monolithically", POST then PUT:
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-monolithically).
//
// This is written by hand rather than with ggcr's Pusher.Upload, which sends POST,
// PATCH and PUT: the monolithic form is one request (and, on ECR, one UploadLayerPart
// call) less per blob, and it is the form known to work on ECR for any size — ECR
// refuses chunked parts under 5 MB and has dropped data from multi-PATCH uploads
// (aws/containers-roadmap#2831; KitOps moved ECR pushes to a monolithic PUT, tested
// with a 15 GB layer, kitops-ml/kitops PR #822).
//
// The whole sequence is retried, as ggcr retries uploadOne: a retryable failure
// (5xx, 429, reset, EOF) starts over with a HEAD (the previous PUT may have landed) and
// a fresh source stream, up to the Copier's backoff steps, sleeping in between while
// honouring ctx. It reports whether this call uploaded the blob.
func (s *session) pushBlob(ctx context.Context, desc v1.Descriptor, open func() (io.ReadCloser, error)) (uploaded bool, err error) {
	b := s.c.backoff
	wait := b.Duration
	var sent bool // a PUT went out in some attempt
	for attempt := 1; ; attempt++ {
		var present bool
		client, cerr := s.dst.pushClient(ctx)
		if cerr != nil {
			err = classify("authenticate to destination", onDest, cerr)
		} else {
			present, err = s.pushBlobOnce(ctx, client, desc, open, &sent)
		}
		if err == nil {
			return !present || sent, nil
		}
		if !retry.IsRetryable(err) || attempt >= max(b.Steps, 1) || ctx.Err() != nil {
			return false, err
		}
		d := wait
		if b.Jitter > 0 {
			d += time.Duration(rand.Float64() * b.Jitter * float64(wait))
		}
		if b.Cap > 0 {
			d = min(d, b.Cap)
		}
		s.log.Debug("blob upload failed; retrying", "blob", desc.Digest.String(), "attempt", attempt, "wait", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, err
		case <-t.C:
		}
		if b.Factor > 0 {
			wait = time.Duration(float64(wait) * b.Factor)
		}
	}
}

// pushBlobOnce is one attempt: present reports that the HEAD found the blob.
func (s *session) pushBlobOnce(ctx context.Context, client *http.Client, desc v1.Descriptor, open func() (io.ReadCloser, error), sent *bool) (present bool, err error) {
	op := "upload blob " + desc.Digest.String()
	repo := s.dst.repo
	base := &url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr()}
	blobURL := base.ResolveReference(&url.URL{Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), desc.Digest)})

	resp, err := do(ctx, client, http.MethodHead, blobURL.String(), nil)
	if err != nil {
		return false, classify("head destination blob "+desc.Digest.String(), onDest, err)
	}
	resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK, http.StatusNotFound); err != nil {
		return false, classify("head destination blob "+desc.Digest.String(), onDest, err)
	}
	if resp.StatusCode == http.StatusOK {
		return true, nil
	}

	select {
	case s.c.sem <- struct{}{}:
	case <-ctx.Done():
		return false, classify(op, onDest, ctx.Err())
	}
	defer func() { <-s.c.sem }()

	// The source download starts while the upload is being opened: both are a round
	// trip, and the PUT needs both.
	type opened struct {
		body io.ReadCloser
		err  error
	}
	src := make(chan opened, 1)
	go func() {
		body, err := open()
		src <- opened{body, err}
	}()
	closeSource := func() {
		if o := <-src; o.body != nil {
			o.body.Close()
		}
	}
	start := base.ResolveReference(&url.URL{Path: fmt.Sprintf("/v2/%s/blobs/uploads/", repo.RepositoryStr())})
	resp, err = do(ctx, client, http.MethodPost, start.String(), nil)
	if err != nil {
		closeSource()
		return false, classify(op, onDest, err)
	}
	resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		closeSource()
		return false, classify(op, onDest, err)
	}
	loc, err := uploadLocation(resp, desc.Digest)
	if err != nil {
		closeSource()
		return false, &Error{Op: op, Code: string(transport.BlobUploadInvalidErrorCode), Status: resp.StatusCode, Err: err}
	}
	o := <-src
	if o.err != nil {
		return false, o.err
	}
	body := o.body
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc, body)
	if err != nil {
		body.Close()
		return false, classify(op, onDest, err)
	}
	// GetBody lets the transports below (a refreshed ECR token, a Retry-After) replay
	// the PUT by re-opening the source stream.
	req.GetBody = open
	req.ContentLength = desc.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	*sent = true
	resp, err = client.Do(req)
	if err != nil {
		return false, classify(op, onDest, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusCreated); err != nil {
		return false, classify(op, onDest, err)
	}
	return false, nil
}

// openSourceBlob GETs a blob from the source (following a redirect to storage, as ECR
// answers). The body is streamed into the destination's PUT as is: the destination
// checks the digest when the upload is committed (PUT ?digest=; ECR answers a mismatch
// with InvalidLayerException, API_CompleteLayerUpload.html; distribution with
// DIGEST_INVALID) and the PUT's Content-Length holds it to the manifest's size, so
// hashing it here as well (as ggcr's layer reader does) would only spend CPU — half of
// the copy's CPU for a large image on this machine (bench scenario 1).
func (s *session) openSourceBlob(ctx context.Context, h v1.Hash) (io.ReadCloser, error) {
	op := "get source blob " + h.String()
	client, err := s.src.httpClient(ctx, s.c.backoff)
	if err != nil {
		return nil, classify(op, onSource, err)
	}
	resp, err := do(ctx, client, http.MethodGet, s.sourceBlobURL(h), nil)
	if err != nil {
		return nil, classify(op, onSource, err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, classify(op, onSource, err)
	}
	return resp.Body, nil
}

// sourceBlobSize HEADs a source blob for its size.
func (s *session) sourceBlobSize(ctx context.Context, h v1.Hash) (int64, error) {
	op := "head source blob " + h.String()
	client, err := s.src.httpClient(ctx, s.c.backoff)
	if err != nil {
		return 0, classify(op, onSource, err)
	}
	resp, err := do(ctx, client, http.MethodHead, s.sourceBlobURL(h), nil)
	if err != nil {
		return 0, classify(op, onSource, err)
	}
	resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return 0, classify(op, onSource, err)
	}
	if resp.ContentLength < 0 {
		return 0, &Error{Op: op, Code: string(transport.SizeInvalidErrorCode), Err: errors.New("no Content-Length")}
	}
	return resp.ContentLength, nil
}

func (s *session) sourceBlobURL(h v1.Hash) string {
	repo := s.src.repo
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), h)}
	return u.String()
}

func do(ctx context.Context, client *http.Client, method, u string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}

// uploadLocation is where the blob's PUT goes: the POST's Location, resolved against
// the request (registries may answer a bare path), with ?digest= added to whatever
// query the registry put there. A Location on another host is refused: the client
// carries the destination's credentials, and the registries we target (ECR among
// them) upload to themselves.
func uploadLocation(resp *http.Response, digest v1.Hash) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("the registry started an upload without a Location")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("upload Location %q: %w", loc, err)
	}
	u = resp.Request.URL.ResolveReference(u)
	if u.Host != resp.Request.URL.Host {
		return "", fmt.Errorf("upload Location on another host (%s) refused", u.Host)
	}
	q := u.Query()
	q.Set("digest", digest.String())
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// pushClient is an authenticated client with push (and pull) scope on the destination
// repository, for the blob uploads written by hand. It has no retry transport of its
// own: pushBlob retries the whole upload (a PUT's streamed body cannot be re-sent by a
// transport that does not know how to re-open it).
func (e *endpoint) pushClient(ctx context.Context) (*http.Client, error) {
	e.pushMu.Lock()
	defer e.pushMu.Unlock()
	if e.push != nil {
		return e.push, nil
	}
	rt := transport.NewUserAgent(e.rt, userAgent)
	tr, err := transport.NewWithContext(ctx, e.repo.Registry, e.auth, rt, []string{e.repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, err // not kept: the next blob tries again
	}
	e.push = &http.Client{Transport: tr}
	return e.push, nil
}
