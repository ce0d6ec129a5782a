// Package conformance runs the OCI distribution-spec conformance suite — an independent
// client nobody here wrote — against the sandbox's source registry, reached as a user
// reaches ECR (repositories created and the endpoint and password obtained through the
// ECR API). The suite is pinned in tools/go.mod, a module of its own, and built by the
// test with go build. Any failure not in the test's allow-list of differences real ECR has
// as well fails the test; see docs/SANDBOX.md.
package conformance
