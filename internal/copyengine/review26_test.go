package copyengine

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// review26User is a registry login of one user of the sandbox.
func review26User(t *testing.T, sb *sandbox.Sandbox, account, user string) ecrSide {
	t.Helper()
	key, secret, err := sb.Credentials(account, user)
	if err != nil {
		t.Fatal(err)
	}
	api := ecr.New(ecr.Options{Region: sandbox.DefaultRegion, BaseEndpoint: aws.String(sb.APIURL()),
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")})
	out, err := api.GetAuthorizationToken(context.Background(), &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
	u, pass, _ := strings.Cut(string(raw), ":")
	return ecrSide{api: api, host: strings.TrimPrefix(aws.ToString(out.AuthorizationData[0].ProxyEndpoint), "http://"),
		auth: &authn.Basic{Username: u, Password: pass}}
}

// prefixPolicy lets a user of the destination account write and read repositories under
// prefix only, as the destination role does (infra/destination-role.yaml, ReadWithinPrefix
// and the writes), with the account setting readable.
func prefixPolicy(prefix string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:GetAccountSetting"],"Resource":"*"},
		{"Effect":"Allow","Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage",
			"ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:DescribeImages","ecr:DescribeRepositories","ecr:GetDownloadUrlForLayer","ecr:ListImages"],
		 "Resource":"arn:aws:ecr:*:%s:repository/%s*"}]}`, sandbox.DestinationAccount, prefix)
}

// TestReview26MountIndexIgnoresWhoCopies: two identities copy into one destination
// registry, each allowed to read and write under its own prefix (two rules naming two
// destination roles of one account, each stack with its own RepositoryPrefix; or a CLI run
// next to them). The engine keys what it knows of the registry's blobs, and the copies in
// flight, by registry and encryption only: the copy into b/ asks to mount the base from
// a/, which its identity may not read — a denied ecr:GetDownloadUrlForLayer in the
// destination account (CloudTrail) for every blob, and, when the copies run together, the
// copy into b/ first waits for the one into a/ (to mount from it) and then uploads anyway.
func TestReview26MountIndexIgnoresWhoCopies(t *testing.T) {
	cfg := sandbox.TwoAccounts("")
	cfg.Accounts[1].Users = append(cfg.Accounts[1].Users,
		sandbox.UserConfig{Name: "team-a", Policies: []string{prefixPolicy("a/")}},
		sandbox.UserConfig{Name: "team-b", Policies: []string{prefixPolicy("b/")}})
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	src, admin := sandboxSide(t, sb, sandbox.SourceAccount), sandboxSide(t, sb, sandbox.DestinationAccount)
	if _, err := admin.api.PutAccountSetting(context.Background(), &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	teams := map[string]ecrSide{"a": review26User(t, sb, sandbox.DestinationAccount, "team-a"), "b": review26User(t, sb, sandbox.DestinationAccount, "team-b")}
	base := must[v1.Image](t)(random.Image(64<<10, 2))
	request := func(prefix, name string) Request {
		img := must[v1.Image](t)(mutate.AppendLayers(base, must[v1.Layer](t)(random.Layer(512, types.DockerLayer))))
		s := src.repo(t, prefix+"-"+name, true)
		if err := remote.Write(s.Tag("v1"), img, remote.WithAuth(src.auth)); err != nil {
			t.Fatal(err)
		}
		admin.repo(t, prefix+"/"+name, true)
		team := teams[prefix]
		return Request{Source: Endpoint{Repository: s, Auth: src.auth},
			Destination: Endpoint{Repository: team.repo(t, prefix+"/"+name, false), Auth: team.auth, Mounting: Mounting{Enabled: true, Encryption: "AES256"}},
			Digest:      digestOf(t, img).String(), Tag: "v1"}
	}
	logs := &lockedBuffer{}
	run := New(WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))).Start()
	// Together, into a registry where nothing is known yet: a/one and b/one.
	var wg sync.WaitGroup
	for _, r := range []Request{request("a", "one"), request("b", "one")} {
		wg.Go(func() {
			if res := run.Copy(context.Background(), r); res.Err != nil {
				t.Error(res.Err)
			}
		})
	}
	wg.Wait()
	// Then a/two and b/two, one after the other.
	for _, r := range []Request{request("a", "two"), request("b", "two")} {
		if res := run.Copy(context.Background(), r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}

	var denied []string
	for _, e := range sb.AccessLogSince(0) {
		if e.DeniedAction != "" {
			denied = append(denied, fmt.Sprintf("%s mount into %s from %s", e.DeniedAction, e.Repository, e.MountFrom))
		}
	}
	if len(denied) > 0 {
		t.Errorf("%d mounts asked from repositories the copying identity may not read:\n%s", len(denied), strings.Join(denied, "\n"))
	}
	// Waiting: a copy that waits for another one, to mount the shared layers from it, says
	// so (a debug line); here it could not mount from it and would upload them anyway.
	// (The access log's order — one copy's first upload after the other's manifest — also
	// shows when one copy is merely slower, under -race on a loaded machine: 5 runs in 30.)
	var waits []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "waiting for a copy of shared layers") {
			waits = append(waits, line)
		}
	}
	if len(waits) > 0 {
		t.Errorf("one copy waited for the other, to mount from a repository it may not read:\n%s", strings.Join(waits, "\n"))
	}
}

// lockedBuffer is a log sink for concurrent copies.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReview26MountCheckHiccupUploadsTheMountedBlob: a mount answered 201 is checked with a
// HEAD; when that one HEAD fails for a passing reason (a 503, a throttle), tryMount treats the
// mount as not made and the blob is uploaded in full, though it is there: the whole layer
// crosses the network — for a 400 MiB base, 400 MiB — because of one hiccup, where starting
// the attempt over (its HEAD finds the blob) would have cost one request.
func TestReview26MountCheckHiccupUploadsTheMountedBlob(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(64<<10, 2))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	run := fastCopier()
	mount := Mounting{Enabled: true, Encryption: "AES256"}
	req := func(dst string) Request {
		return Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dst.repo(t, dst), Mounting: mount}, Digest: d.String(), Tag: "v1"}
	}
	if r := run.Copy(context.Background(), req("mirror/a")); r.Err != nil {
		t.Fatal(r.Err)
	}
	var mu sync.Mutex
	inB, hiccup := map[string]bool{}, map[string]bool{}
	var puts, mounts int
	const blobs = "/v2/mirror/b/blobs/"
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, blobs+"sha256:"):
			dg := strings.TrimPrefix(r.URL.Path, blobs)
			if !inB[dg] {
				w.WriteHeader(http.StatusNotFound) // ggcr's registry has every blob in every repository
				return true
			}
			if !hiccup[dg] { // the check right after the mount
				hiccup[dg] = true
				writeRegError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "try again")
				return true
			}
		case r.Method == http.MethodPost && r.URL.Path == blobs+"uploads/" && r.URL.Query().Get("mount") != "":
			mounts++
			dg := r.URL.Query().Get("mount")
			inB[dg] = true // mounted
			w.Header().Set("Location", blobs+dg)
			w.Header().Set("Docker-Content-Digest", dg)
			w.WriteHeader(http.StatusCreated)
			return true
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, blobs+"uploads/"):
			puts++
			inB[r.URL.Query().Get("digest")] = true
		}
		return false
	})
	res := run.Copy(context.Background(), req("mirror/b"))
	e.dst.setHook(nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	t.Logf("%d mounts answered 201, %d blob uploads; result: %d blobs mounted, %d bytes uploaded", mounts, puts, res.BlobsMounted, res.BytesCopied)
	if puts != 0 || res.BlobsMounted != 3 {
		t.Errorf("3 blobs mounted (201) whose check hit one 503 each: %d uploaded anyway (%d bytes), %d counted mounted; want none uploaded, 3 mounted", puts, res.BytesCopied, res.BlobsMounted)
	}
}

// TestReview26MountableUndercountsConcurrentCopies: BytesMountable is what enabling blob
// mounting would save (the BytesMountable metric per destination, the backfill's
// bytesMountable). With mounting off the copies do not wait for each other, so copies made
// together — an SQS batch, an inline backfill — never see the base in another repository
// until it is written there: they report (almost) nothing mountable, while the same copies
// with mounting on mount the base into every repository after the first
// (TestConcurrentCopiesMountSharedLayers).
func TestReview26MountableUndercountsConcurrentCopies(t *testing.T) {
	const n = 6
	w := newMountWorld(t, n, 128<<10, false)
	w.sb.SetLatency(20 * time.Millisecond) // a registry a little away: the copies overlap
	var mountable int64
	for _, r := range w.copyAll(t, New(WithJobs(4*n)).Start(), w.reqs) {
		mountable += r.BytesMountable
	}
	t.Logf("%d copies sharing a %d-byte base, mounting off: %d bytes reported mountable", n, w.base, mountable)
	if want := int64(n-1) * w.base; mountable < want {
		t.Errorf("copies together report %d bytes mountable (%.1f bases), want %d: mounting on mounts the base into the %d repositories after the first",
			mountable, float64(mountable)/float64(w.base), want, n-1)
	}
}
