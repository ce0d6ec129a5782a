package sandbox

// The two-account layout the CLI's sandbox command, the demo and most tests use: a source
// account where images are pushed and the replicator runs, and a destination account
// with the role the replicator assumes.
const (
	SourceAccount      = "111111111111"
	DestinationAccount = "222222222222"
	DefaultRegion      = "us-east-1"
	// SourceUser is the identity the replicator runs as in the source account.
	SourceUser = "replicator"
	// AdminUser exists in every account of the default layout, for inspecting it.
	AdminUser = "admin"
	// DestinationRole is the role destination accounts create from infra/destination-role.yaml.
	DestinationRole = "ecr-replicator-destination"
	// SourceReaderRole is an optional role in the source account (rules' source.roleArn).
	SourceReaderRole = "ecr-replicator-source-reader"
)

// TwoAccounts returns the default layout. The destination role trusts the source
// account and requires externalID (none when empty).
func TwoAccounts(externalID string) Config {
	return Config{Accounts: []AccountConfig{
		{
			ID:    SourceAccount,
			Users: []UserConfig{{Name: SourceUser}, {Name: AdminUser}},
			Roles: []RoleConfig{{Name: SourceReaderRole, Trusted: []string{SourceAccount}}},
		},
		{
			ID:    DestinationAccount,
			Users: []UserConfig{{Name: AdminUser}},
			Roles: []RoleConfig{{Name: DestinationRole, Trusted: []string{SourceAccount}, ExternalID: externalID}},
		},
	}}
}
