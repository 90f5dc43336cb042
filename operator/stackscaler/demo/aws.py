"""The AWS stand-in: moto, arranged for the demo stack and driven by the load generator.

Synchronous boto3 calls; the live loop runs them in its thread pool, never
on the event loop. The clients carry the fake credentials and the moto
endpoint explicitly, so the demo's own environment is never changed and a
real AWS account is never reached.

What :meth:`StandIn.arrange` creates in moto:

* launch templates and Auto Scaling groups for the web tier and the workers
  (MinSize/MaxSize = the resources' bounds, DesiredCapacity = their minimum);
* the SQS queue the workers read;
* the PostgreSQL source instance of the read replicas and, once the
  ReadReplicaPool exists (:meth:`StandIn.first_replica`), its first replica,
  tagged as the operator tags its own, so every tier starts at its
  ``minCapacity`` (moto marks replicas available at once);
* the DynamoDB table of the stack's TableCapacity resources, in provisioned
  mode at their ``minCapacity`` (read and write; 1 for a dimension no resource
  scales), tagged ``stackscaler.dev/managed=true`` as docs/install.md asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from stackscaler.actuators.rds_replicas import OWNER_TAG, OWNER_UID_TAG, replica_identifier
from stackscaler.demo.load import Datum
from stackscaler.demo.processes import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from stackscaler.demo.stack import StackFacts, TableFacts

IMAGE_ID = "ami-0abcdef1234567890"
"""Any id does: moto launches instances from it without checking."""
SQS_BATCH = 10


class StandIn:
    def __init__(self, endpoint: str, region: str) -> None:
        session = boto3.session.Session(
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_SECRET_KEY,
            region_name=region,
        )
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
            max_pool_connections=10,
        )

        def client(service: str) -> Any:
            return session.client(service, endpoint_url=endpoint, config=config)

        self.region = region
        self.autoscaling = client("autoscaling")
        self.ec2 = client("ec2")
        self.sqs = client("sqs")
        self.rds = client("rds")
        self.cloudwatch = client("cloudwatch")
        self.dynamodb = client("dynamodb")
        self.queue_url = ""

    # --- arrange -------------------------------------------------------------

    def arrange(self, facts: StackFacts) -> list[str]:
        """Create what the demo stack scales; one line per thing, for people."""
        zones = [f"{self.region}{z}" for z in "abc"]
        done = []
        for asg, tier in ((facts.web_asg, facts.web), (facts.workers_asg, facts.workers)):
            self.ec2.create_launch_template(
                LaunchTemplateName=asg,
                LaunchTemplateData={"ImageId": IMAGE_ID, "InstanceType": "t3.medium"},
            )
            self.autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=asg,
                LaunchTemplate={"LaunchTemplateName": asg, "Version": "$Latest"},
                MinSize=tier.min_capacity,
                MaxSize=tier.max_capacity,
                DesiredCapacity=tier.min_capacity,
                AvailabilityZones=zones,
            )
            done.append(
                f"Auto Scaling group {asg} (launch template {asg}, min {tier.min_capacity}, "
                f"max {tier.max_capacity}, desired {tier.min_capacity})"
            )
        self.queue_url = self.sqs.create_queue(QueueName=facts.queue)["QueueUrl"]
        done.append(f"SQS queue {facts.queue}")
        self.rds.create_db_instance(
            DBInstanceIdentifier=facts.db,
            Engine=facts.db_engine,
            DBInstanceClass="db.r6g.large",
            AllocatedStorage=100,
            MasterUsername="shop",
            MasterUserPassword="not-a-secret-demo-1",
            BackupRetentionPeriod=7,
        )
        done.append(f"RDS {facts.db_engine} instance {facts.db} (the replicas' source)")
        for table in sorted({t.table for t in facts.tables}):
            done.append(self._table(table, [t for t in facts.tables if t.table == table]))
        return done

    def _table(self, name: str, resources: Sequence[TableFacts]) -> str:
        def units(dimension: str) -> int:
            return next((t.min_capacity for t in resources if t.dimension == dimension), 1)

        read, write = units("Read"), units("Write")
        self.dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "session", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "session", "KeyType": "HASH"}],
            ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write},
            Tags=[{"Key": "stackscaler.dev/managed", "Value": "true"}],
        )
        return f"DynamoDB table {name} (provisioned: {read} read, {write} write units)"

    def first_replica(self, facts: StackFacts, owner_uid: str, owner: str) -> str:
        """One read replica of the source, owned (tagged) by the ReadReplicaPool."""
        identifier = replica_identifier(facts.replica_prefix, ())
        params: dict[str, Any] = {
            "DBInstanceIdentifier": identifier,
            "SourceDBInstanceIdentifier": facts.db,
            "Tags": [
                {"Key": OWNER_UID_TAG, "Value": owner_uid},
                {"Key": OWNER_TAG, "Value": owner},
            ],
        }
        if facts.replica_class:
            params["DBInstanceClass"] = facts.replica_class
        if facts.replica_zones:
            params["AvailabilityZone"] = facts.replica_zones[0]
        self.rds.create_db_instance_read_replica(**params)
        return f"read replica {identifier} of {facts.db} (owned by {owner})"

    # --- observe -------------------------------------------------------------

    def table_units(self, tables: Sequence[TableFacts]) -> dict[str, int]:
        """The provisioned units of each TableCapacity's dimension, by resource name."""
        described: dict[str, Any] = {}
        out = {}
        for t in tables:
            if t.table not in described:
                described[t.table] = self.dynamodb.describe_table(TableName=t.table)["Table"]
            doc = described[t.table]
            if t.index:
                doc = next(
                    g for g in doc.get("GlobalSecondaryIndexes", ()) if g["IndexName"] == t.index
                )
            out[t.name] = int(doc["ProvisionedThroughput"][f"{t.dimension}CapacityUnits"])
        return out

    def in_service(self, names: Sequence[str]) -> dict[str, int]:
        """InService instances per Auto Scaling group."""
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=list(names))
        return {
            g["AutoScalingGroupName"]: sum(
                1 for i in g.get("Instances", ()) if i.get("LifecycleState") == "InService"
            )
            for g in groups["AutoScalingGroups"]
        }

    def available_replicas(self, source: str) -> int:
        found = self.rds.describe_db_instances(DBInstanceIdentifier=source)["DBInstances"]
        replicas = [str(r) for r in (found[0].get("ReadReplicaDBInstanceIdentifiers") or ())]
        if not replicas:
            return 0
        paginator = self.rds.get_paginator("describe_db_instances")
        status = {
            d["DBInstanceIdentifier"]: d.get("DBInstanceStatus")
            for page in paginator.paginate()
            for d in page["DBInstances"]
        }
        return sum(1 for r in replicas if status.get(r) == "available")

    def backlog(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attrs.get("ApproximateNumberOfMessages", 0)),
            int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        )

    # --- act -----------------------------------------------------------------

    def publish(self, data: Sequence[Datum], when: datetime) -> None:
        """One PutMetricData per namespace, high-resolution (StorageResolution=1)."""
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for d in data:
            by_namespace.setdefault(d.metric.namespace, []).append(
                {
                    "MetricName": d.metric.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in d.metric.dimensions],
                    "Value": float(d.value),
                    "Unit": d.unit,
                    "Timestamp": when,
                    "StorageResolution": 1,
                }
            )
        for namespace, metric_data in by_namespace.items():
            self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=metric_data)

    def send_jobs(self, count: int, first_id: int) -> int:
        """Send ``count`` job messages in batches of 10; the number sent."""
        sent = 0
        while sent < count:
            n = min(SQS_BATCH, count - sent)
            entries = [
                {"Id": str(i), "MessageBody": f'{{"job": {first_id + sent + i}}}'} for i in range(n)
            ]
            result = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            sent += len(result.get("Successful", ()))
            if result.get("Failed"):
                break
        return sent

    def finish_jobs(self, count: int) -> int:
        """Receive and delete up to ``count`` messages (the workers' work); the number done."""
        done = 0
        while done < count:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_BATCH, count - done),
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                break
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
            done += len(got)
        return done

    def close(self) -> None:
        for c in (self.autoscaling, self.ec2, self.sqs, self.rds, self.cloudwatch, self.dynamodb):
            c.close()
