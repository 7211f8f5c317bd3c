"""hooks of the PostHog recordings provider."""
