"""Sign in with Google, GitHub and any OpenID Connect provider (authorization code + PKCE)."""
