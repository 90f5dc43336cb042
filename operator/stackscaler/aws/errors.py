"""botocore errors mapped onto stackscaler's error tree, at the boundary.

Throttling is temporary with a delay; permissions, validation and not-found
errors are permanent, with a message naming the resource and the IAM action
(``autoscaling:SetDesiredCapacity``) so an operator knows what to grant.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from stackscaler.errors import (
    AccessDenied,
    PermanentError,
    StackscalerError,
    TargetNotFound,
    TemporaryError,
    Throttled,
)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "EC2ThrottledException",
    }
)
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "OptInRequired",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
        "UnauthorizedAccess",
        "NotAuthorized",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBClusterNotFoundFault",
        "DBClusterNotFound",
        "ReplicationGroupNotFoundFault",
        "ReplicationGroupNotFound",
        "ResourceNotFound",
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NotFound",
    }
)
TEMPORARY_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidDBInstanceState",
        "InvalidDBInstanceStateFault",
        "InvalidReplicationGroupState",
        "InvalidReplicationGroupStateFault",
        "ScalingActivityInProgress",
        "ScalingActivityInProgressFault",
        "ResourceContention",
    }
)

IAM_PREFIX = {
    "autoscaling": "autoscaling",
    "cloudwatch": "cloudwatch",
    "sqs": "sqs",
    "rds": "rds",
    "elasticache": "elasticache",
    "sts": "sts",
}


def iam_action(service: str, operation: str) -> str:
    return f"{IAM_PREFIX.get(service, service)}:{operation}"


def translate(
    exc: Exception, *, service: str, operation: str, resource: str, region: str | None
) -> StackscalerError:
    """The stackscaler error for a botocore failure of ``service``/``operation``."""
    where = f"{service} {operation} on {resource}" + (f" in {region}" if region else "")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message", "")).strip()
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"{code}: {message}" if message else code
        if code in THROTTLING_CODES or status == 429:
            return Throttled(f"{where}: throttled by AWS ({detail})", delay=_throttle_delay(exc))
        if code in ACCESS_CODES or status == 403:
            return AccessDenied(
                f"{where}: access denied ({detail}); grant the IAM action "
                f"{iam_action(service, operation)} on {resource} to the operator's role"
            )
        if code in NOT_FOUND_CODES or code.endswith(("NotFound", "NotFoundFault")):
            return TargetNotFound(f"{where}: {resource} does not exist ({detail})")
        if code in TEMPORARY_CODES or status >= 500:
            return TemporaryError(f"{where}: temporary AWS error ({detail})", delay=15.0)
        return PermanentError(f"{where}: rejected by AWS ({detail})")
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(
            f"{where}: no AWS credentials found; configure IRSA or EKS Pod Identity for the "
            "operator's ServiceAccount, or the default credential chain"
        )
    if isinstance(
        exc,
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError,
    ):
        return TemporaryError(f"{where}: cannot reach AWS ({exc})", delay=15.0)
    if isinstance(exc, BotoCoreError):
        return TemporaryError(f"{where}: {type(exc).__name__}: {exc}", delay=15.0)
    return TemporaryError(f"{where}: {type(exc).__name__}: {exc}", delay=15.0)


def _throttle_delay(exc: ClientError) -> float:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    retry_after = headers.get("retry-after")
    try:
        return max(1.0, float(retry_after)) if retry_after else 10.0
    except ValueError:
        return 10.0
