"""operators of the PostHog recordings provider."""
