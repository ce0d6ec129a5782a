// Command push is the registry client of the README's worked example: it pushes files as
// a one-layer image to an ECR repository — creating the repository when it does not exist
// — as `aws ecr create-repository`, `docker login` and `crane append` would together,
// with nothing to install. It finds the registry as every ECR client does (the ECR API's
// GetAuthorizationToken, from the standard AWS environment: the sandbox's through
// AWS_ENDPOINT_URL_ECR).
//
//	go run ./internal/tooling/sandbox/push team-a/app:v1 README.md [FILE...]
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: push REPOSITORY:TAG FILE [FILE...]  (files become one layer, under their base names)")
		os.Exit(2)
	}
	if err := push(context.Background(), os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "push:", err)
		os.Exit(1)
	}
}

func push(ctx context.Context, target string, files []string) error {
	repo, tag, ok := strings.Cut(target, ":")
	if !ok || repo == "" || tag == "" {
		return fmt.Errorf("%q: want REPOSITORY:TAG", target)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	created := "exists"
	_, err = ecr.NewFromConfig(cfg).CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	var exists *ecrtypes.RepositoryAlreadyExistsException
	switch {
	case err == nil:
		created = "created"
	case !errors.As(err, &exists):
		return fmt.Errorf("creating repository %s: %w", repo, err)
	}
	layer, err := tarLayer(files)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	reg, err := ecraccess.NewResolver(cfg).Client(ctx, ecraccess.Access{Region: cfg.Region})
	if err != nil {
		return err
	}
	host, err := reg.Host(ctx, repo)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithAuth(reg.Authenticator()), remote.WithContext(ctx)); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("pushed %s:%s (%s; repository %s)\n", repo, tag, d, created)
	return nil
}

// tarLayer is the files in one uncompressed tar layer, under their base names.
func tarLayer(files []string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.Base(f), Mode: 0o644, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
}
