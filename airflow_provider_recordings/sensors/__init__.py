"""sensors of the PostHog recordings provider."""
