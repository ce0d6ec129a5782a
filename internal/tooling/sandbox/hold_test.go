package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// A manifest PUT by tag is held after the tag is stored: the client gives up while held
// and sees its context's error, yet the tag is there.
func TestHoldManifestPutByTag(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "held", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(1024, 1)
	if err := remote.Write(ref(t, host, "held", "base"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	digest := mustDigest(t, img)
	pass := auth.(*authn.Basic).Password

	reached := make(chan sandbox.Entry, 1)
	release := make(chan struct{})
	remove, err := e.sb.HoldRequests(sandbox.Hold{Account: sandbox.SourceAccount, Step: sandbox.StepManifestPUT, Repository: "held", Reference: "v1",
		Reached: func(en sandbox.Entry) { reached <- en; <-release }})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()

	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+host+"/v2/held/manifests/v1", bytes.NewReader(raw))
		req.Header.Set("Content-Type", string(mt))
		req.SetBasicAuth("AWS", pass)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	var en sandbox.Entry
	select {
	case en = <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the PUT was never held")
	}
	if en.Status != http.StatusCreated || en.Reference != "v1" || en.Operation != "PUT manifest" {
		t.Errorf("held entry %+v", en)
	}
	// Applied before answered: the tag resolves while the PUT is held.
	if d, err := remote.Head(ref(t, host, "held", "v1"), remote.WithAuth(auth)); err != nil || d.Digest.String() != digest {
		t.Fatalf("tag while held: %v %v", d, err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("client error %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not give up")
	}
	close(release)
	if d, err := remote.Get(ref(t, host, "held", "v1"), remote.WithAuth(auth)); err != nil || d.Digest.String() != digest {
		t.Fatalf("GET by tag after the abandoned PUT: %v %v", d, err)
	}
}

// An ECR API call is held after its effect: a BatchDeleteImage has deleted the image
// before its caller hears so.
func TestHoldBatchDeleteImage(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "held", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(1024, 1)
	if err := remote.Write(ref(t, host, "held", "gone"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	var during error
	remove, err := e.sb.HoldRequests(sandbox.Hold{Account: sandbox.SourceAccount, Operation: "BatchDeleteImage", Repository: "held", Reference: "gone",
		Reached: func(en sandbox.Entry) {
			_, during = remote.Head(ref(t, host, "held", "gone"), remote.WithAuth(auth))
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	out, err := ecr.NewFromConfig(src).BatchDeleteImage(e.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("held"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("gone")}}})
	if err != nil || len(out.ImageIds) != 1 {
		t.Fatalf("BatchDeleteImage: %+v %v", out, err)
	}
	if during == nil {
		t.Error("the image was still there while the delete was held")
	}
	if n := len(sandbox.Filter(e.sb.AccessLog(), func(en sandbox.Entry) bool { return en.Operation == "BatchDeleteImage" && en.Reference == "gone" })); n != 1 {
		t.Errorf("%d BatchDeleteImage entries, want 1", n)
	}
}

func TestHoldCountsAndRemoval(t *testing.T) {
	w := newStepWorld(t)
	if _, err := w.e.sb.HoldRequests(sandbox.Hold{Account: sandbox.SourceAccount, Reached: func(sandbox.Entry) {}}); err == nil {
		t.Error("a hold without a step or an operation was accepted")
	}
	if _, err := w.e.sb.HoldRequests(sandbox.Hold{Step: sandbox.StepPing, Reached: func(sandbox.Entry) {}}); err == nil {
		t.Error("a hold without an account was accepted")
	}
	var n atomic.Int32
	remove, err := w.e.sb.HoldRequests(sandbox.Hold{Account: sandbox.SourceAccount, Step: sandbox.StepTagsList, Count: -1, Reached: func(sandbox.Entry) { n.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	once, err := w.e.sb.HoldRequests(sandbox.Hold{Account: sandbox.SourceAccount, Step: sandbox.StepStorageGET, Reference: w.digest, Reached: func(sandbox.Entry) { n.Add(100) }})
	if err != nil {
		t.Fatal(err)
	}
	defer once()
	for i := 0; i < 3; i++ {
		must(t, w.request(sandbox.StepTagsList, w.c.http), http.StatusOK)
		must(t, w.request(sandbox.StepStorageGET, w.c.http), http.StatusOK)
	}
	// A refused request is not held.
	w.send(w.c.http, http.MethodGet, "http://"+w.c.host+"/v2/nope/tags/list", nil, nil)
	remove()
	must(t, w.request(sandbox.StepTagsList, w.c.http), http.StatusOK)
	if got := n.Load(); got != 103 {
		t.Errorf("reached %d, want 3 tag lists and one storage GET (103)", got)
	}
}
