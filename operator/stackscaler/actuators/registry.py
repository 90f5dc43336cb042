"""Which actuator drives which target: the explicit registry (one line per target kind)."""

from __future__ import annotations

import asyncio

from kubernetes import client

from stackscaler.actuators.asg import AsgActuator
from stackscaler.actuators.base import Actuator
from stackscaler.actuators.dynamodb import DynamoDbActuator
from stackscaler.actuators.elasticache import ElastiCacheActuator
from stackscaler.actuators.k8s_scale import K8sScaleActuator
from stackscaler.actuators.rds_replicas import AuroraReaderActuator, RdsReplicaActuator
from stackscaler.aws import AwsCaller
from stackscaler.model.spec import (
    AutoScalingGroupTarget,
    DBClusterTarget,
    DBInstanceTarget,
    ReplicationGroupTarget,
    TableTarget,
    Target,
    WorkloadTarget,
)


class Actuators:
    def __init__(self, caller: AwsCaller, api_client: client.ApiClient | None) -> None:
        self._actuators: dict[type, Actuator] = {
            AutoScalingGroupTarget: AsgActuator(caller),
            DBInstanceTarget: RdsReplicaActuator(caller),
            DBClusterTarget: AuroraReaderActuator(caller),
            ReplicationGroupTarget: ElastiCacheActuator(caller),
            TableTarget: DynamoDbActuator(caller),
        }
        if api_client is not None:
            self._actuators[WorkloadTarget] = K8sScaleActuator(api_client)

    def for_target(self, target: Target) -> Actuator:
        try:
            return self._actuators[type(target)]
        except KeyError:
            raise LookupError(f"no actuator for target kind {target.kind}") from None

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self._actuators.values()))
