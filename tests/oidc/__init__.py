"""Real sign-in providers for the tests: `oidc-provider` run by Node, and a GitHub stand-in."""
