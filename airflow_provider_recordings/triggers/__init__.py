"""triggers of the PostHog recordings provider."""
