enum CredentialAgentModule {}
