package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// repositoryProblem explains a failed repository call on one side of a copy.
func repositoryProblem(err error, which string, repo name.Repository, region string) *problem {
	p := awsProblem(err, which+" repository "+repo.String())
	if p.code == "RepositoryNotFoundException" {
		p.exit = ExitUsage
		if which == "source" {
			p.msg = fmt.Sprintf("source repository %s not found (%s): check the name and the region in the host name; `aws ecr describe-repositories --region %s` lists them", repo, p.code, region)
		} else {
			p.msg = fmt.Sprintf("destination repository %s not found (%s) and --create-repository=false: create it, or let copy create it", repo, p.code)
		}
	}
	return p
}

// registryProblem explains a failed registry request made by the CLI itself (not the
// engine): listing tags, a dry run's lookups.
func registryProblem(err error, doing string, repo name.Repository) error {
	var te *transport.Error
	code, _ := retry.Classify(err)
	status := 0
	if errors.As(err, &te) {
		status = te.StatusCode
		if len(te.Errors) > 0 {
			code = string(te.Errors[0].Code)
		}
	}
	p := &problem{code: code, err: err, exit: ExitFailed, op: doing}
	host, dnsFailed := unresolvable(err)
	switch {
	case dnsFailed:
		p.exit = ExitUsage
		p.msg = unresolvableMessage(host)
	case code == string(transport.NameUnknownErrorCode) || (code == "" && status == http.StatusNotFound):
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("repository %s not found (%s): check the name (repository names are lowercase)", repo, orStatus(code, status))
	case code == string(transport.UnauthorizedErrorCode) || code == string(transport.DeniedErrorCode) || status == http.StatusUnauthorized || status == http.StatusForbidden:
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("%s refused %s %s (%s): log in to it first (docker login %s), or check the identity's permissions", repo.RegistryStr(), doing, repo, orStatus(code, status), repo.RegistryStr())
	case errors.Is(err, context.Canceled):
		return err
	default:
		p.msg = fmt.Sprintf("%s %s failed (%s): %s", doing, repo, orStatus(code, status), apiMessage(err))
	}
	return p
}

func orStatus(code string, status int) string {
	if code != "" {
		return code
	}
	if status != 0 {
		return fmt.Sprintf("HTTP %d", status)
	}
	return "no answer"
}

func isNotFound(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}
