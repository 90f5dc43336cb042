"""AWS plumbing: cached clients, retries, rate limits, error translation."""

from stackscaler.aws.clients import (
    AssumeRoleParams,
    AwsCaller,
    AwsSettings,
    RoleRef,
    default_assume_role_params,
)
from stackscaler.aws.ratelimit import RateLimit, RateLimiters, TokenBucket
from stackscaler.aws.retries import RetryPolicy

__all__ = [
    "AssumeRoleParams",
    "AwsCaller",
    "AwsSettings",
    "RateLimit",
    "RateLimiters",
    "RetryPolicy",
    "RoleRef",
    "TokenBucket",
    "default_assume_role_params",
]
