package ecrname

// Registry is one ECR registry: an account's, in one region. It is a value: compare it,
// use it as a map key.
type Registry struct {
	AccountID string
	Region    string
}

// String is "account/region", for logs and reports.
func (r Registry) String() string { return r.AccountID + "/" + r.Region }

// Repo is a repository of a registry: the one identity of "where an image lives" that
// every package uses — as a map key, in results, in logs — instead of a string built in
// one place and parsed in another.
type Repo struct {
	Registry
	Name string
}

// String is "account/region/name", for logs and reports.
func (r Repo) String() string { return r.Registry.String() + "/" + r.Name }
