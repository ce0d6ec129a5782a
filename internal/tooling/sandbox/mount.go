package sandbox

import (
	"net/http"
	"slices"
)

// Cross-repository blob mounting, as ECR has it since January 2026 ("Blob mounting in
// Amazon ECR", https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html):
//
//   - it is a registry's account setting, BLOB_MOUNTING (GetAccountSetting /
//     PutAccountSetting), DISABLED unless enabled: a mount POST to a registry without it
//     starts a normal upload (202);
//   - it works within one registry only (same account and region: here, the `from`
//     repository is a repository of the registry the POST reaches), between repositories
//     with the same encryption type and key;
//   - ECR mounts only a blob that a manifest in the `from` repository references; a blob
//     that is there but unreferenced is answered 202 and a normal upload starts
//     (aws/containers-roadmap#2860);
//   - the caller needs ecr:GetDownloadUrlForLayer on the `from` repository.
//
// How ECR answers a mount it refuses for the encryption, a `from` repository that does not
// exist, or a caller without ecr:GetDownloadUrlForLayer there is not documented: a guess,
// as the distribution spec has a registry that cannot mount answer, 202 and a normal upload
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#mounting-a-blob-from-another-repository).

const (
	settingBlobMounting = "BLOB_MOUNTING"
	settingEnabled      = "ENABLED"
	settingDisabled     = "DISABLED"
)

// GetAccountSetting: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetAccountSetting.html
// (the sandbox emulates BLOB_MOUNTING only).
func (r *registry) getAccountSetting(name string) (any, *apiError) {
	if name != settingBlobMounting {
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'name': %q (the sandbox emulates %s only)", name, settingBlobMounting)
	}
	r.mu.Lock()
	on := r.blobMounting
	r.mu.Unlock()
	value := settingDisabled
	if on {
		value = settingEnabled
	}
	return map[string]any{"name": name, "value": value}, nil
}

// PutAccountSetting: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutAccountSetting.html
func (r *registry) putAccountSetting(name, value string) (any, *apiError) {
	if name != settingBlobMounting {
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'name': %q (the sandbox emulates %s only)", name, settingBlobMounting)
	}
	if value != settingEnabled && value != settingDisabled {
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'value': %q is not ENABLED or DISABLED", value)
	}
	r.mu.Lock()
	r.blobMounting = value == settingEnabled
	r.mu.Unlock()
	return map[string]any{"name": name, "value": value}, nil
}

// mount answers a POST …/blobs/uploads/?mount=<digest>&from=<repository> with 201 when
// ECR would mount the blob (see above); mounted false means the POST starts a normal
// upload (202) instead.
func (r *registry) mount(w *recorder, req *http.Request, repoName string, tok *registryToken, entry *Entry) (mounted bool, _ *regError) {
	digest, from := req.URL.Query().Get("mount"), req.URL.Query().Get("from")
	if digest == "" || from == "" || from == repoName {
		return false, nil
	}
	if !isDigest(digest) {
		return false, regErr(http.StatusBadRequest, "DIGEST_INVALID", "invalid digest %q", digest)
	}
	entry.MountFrom = from
	r.mu.Lock()
	on := r.blobMounting
	r.mu.Unlock()
	if !on || !r.mayReadLayers(tok, from, entry) {
		return false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	src, ok := r.repos[from]
	dst := r.repos[repoName]
	if !ok || dst == nil || src.encryptionType != dst.encryptionType || src.kmsKey != dst.kmsKey || !src.references(digest) {
		return false, nil
	}
	size, onDisk := r.blobs.stat(digest)
	if !onDisk {
		return false, nil
	}
	dst.blobs[digest] = size
	entry.Mounted = true
	w.Header().Set("Location", "/v2/"+repoName+"/blobs/"+digest)
	w.Header().Set("Docker-Content-Digest", digest)
	w.WriteHeader(http.StatusCreated)
	return true, nil
}

// mayReadLayers checks the caller may read layers of the from repository
// (ecr:GetDownloadUrlForLayer, blob-mounting.html); a denial is logged as one.
func (r *registry) mayReadLayers(tok *registryToken, from string, entry *Entry) bool {
	const action = "ecr:GetDownloadUrlForLayer"
	if tok.policies == nil && tok.session == nil {
		return true
	}
	res := repositoryARN(r.region, r.account, from)
	// With the condition keys of any registry request (allowed): the caller's, and the
	// from repository's tags.
	ctx := r.sb.principalContext(tok.cred, r.region)
	for k, v := range r.tagsOf(from) {
		ctx.set("aws:ResourceTag/"+k, v)
	}
	if ok, _ := decideSession(tok.policies, tok.session, request{action: action, resource: res, principal: tok.principal, context: ctx}); !ok {
		entry.DeniedAction = action
		return false
	}
	entry.AlsoAuthorized = append(entry.AlsoAuthorized, action)
	return true
}

// references reports whether a manifest of the repository references the blob (as an
// image's config or layer, or an index's non-manifest child).
func (r *repository) references(digest string) bool {
	for _, m := range r.manifests {
		if slices.ContainsFunc(m.blobs, func(d descriptor) bool { return d.Digest == digest }) {
			return true
		}
	}
	return false
}

// batchCheckLayerAvailability answers which of the layers a repository holds — what a
// blob HEAD there answers 200 for (ecr:BatchCheckLayerAvailability authorizes both).
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchCheckLayerAvailability.html:
// 1–100 layerDigests; layers (layerAvailability AVAILABLE, layerSize) and failures
// (InvalidLayerDigest, MissingLayerDigest). That ECR reports a layer the repository lacks
// as a MissingLayerDigest failure rather than UNAVAILABLE is a guess, as is the wording.
func (r *registry) batchCheckLayerAvailability(name string, digests []string) (any, *apiError) {
	if len(digests) == 0 || len(digests) > 100 {
		return nil, errorf(400, "InvalidParameterException", "layerDigests must hold between 1 and 100 items")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	layers, failures := []map[string]any{}, []map[string]any{}
	for _, d := range digests {
		size, held := repo.blobs[d]
		switch {
		case !isDigest(d):
			failures = append(failures, map[string]any{"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"})
		case !held:
			failures = append(failures, map[string]any{"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Could not find layer"})
		default:
			layers = append(layers, map[string]any{"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": size})
		}
	}
	return map[string]any{"layers": layers, "failures": failures}, nil
}
