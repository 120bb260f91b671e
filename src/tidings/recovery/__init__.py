"""Account recovery by email: password reset and email verification."""
