"""AWS plumbing: cached clients, retries, rate limits, error translation."""

from stackscaler.aws.clients import AwsCaller, AwsSettings
from stackscaler.aws.ratelimit import RateLimit, RateLimiters, TokenBucket

__all__ = ["AwsCaller", "AwsSettings", "RateLimit", "RateLimiters", "TokenBucket"]
