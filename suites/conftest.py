"""The claims suites run on the flowcheck plugin's fixtures (`flow`, `flow_case`, `flow_claim`)."""
