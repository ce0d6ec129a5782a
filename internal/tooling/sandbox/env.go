package sandbox

// ClientEnv is the environment a client of the default two-account layout needs: the
// standard AWS SDK variables for the source account's replicator user, and SANDBOX_*
// variables naming what a rules document refers to.
func ClientEnv(s *Sandbox, region, externalID string) (map[string]string, error) {
	env, err := s.Env(SourceAccount, SourceUser, region)
	if err != nil {
		return nil, err
	}
	srcHost, err := s.RegistryHost(SourceAccount, region)
	if err != nil {
		return nil, err
	}
	dstHost, err := s.RegistryHost(DestinationAccount, region)
	if err != nil {
		return nil, err
	}
	// AWS CLI v1 reads the region from AWS_DEFAULT_REGION only
	// (https://docs.aws.amazon.com/cli/v1/userguide/cli-configure-envvars.html).
	env["AWS_DEFAULT_REGION"] = env["AWS_REGION"]
	env["SANDBOX_SOURCE_ACCOUNT_ID"] = SourceAccount
	env["SANDBOX_SOURCE_REGISTRY"] = srcHost
	env["SANDBOX_DESTINATION_ACCOUNT_ID"] = DestinationAccount
	env["SANDBOX_DESTINATION_REGISTRY"] = dstHost
	env["SANDBOX_DESTINATION_ROLE_ARN"] = RoleARN(DestinationAccount, DestinationRole)
	env["SANDBOX_DESTINATION_EXTERNAL_ID"] = externalID
	return env, nil
}
