"""core of the PostHog recordings provider."""
