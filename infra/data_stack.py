"""ElastiCache for Redis and the application secrets.

Redis holds the engine's input log (one stream per shard), replies, read
models and the WebSocket registry: it runs encrypted at rest (a customer
managed KMS key) and in transit (TLS required), in the isolated subnets,
reachable only from the security groups given access (util.allow_to_redis), with a replica
in another AZ and automatic failover, and ``maxmemory-policy noeviction`` so that
memory pressure refuses writes instead of silently dropping stream entries.

Secrets Manager holds the JWT signing key (generated here) and the Neon and
Atlas connection strings (created here with a random placeholder; the operator
puts the real values, see docs/deployment.md).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .config import OpexConfig
from .util import acknowledge, retention

REDIS_ENGINE_VERSION = "7.1"


class DataStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, cfg: OpexConfig, vpc: ec2.IVpc, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # ------------------------------------------------------------ secrets
        # the name, not a token parsed back out of the ARN: the Lambdas get it as JWT_SECRET_NAME
        self.jwt_secret_name = f"{cfg.secret_prefix}jwt-signing-key"
        self.jwt_secret = secretsmanager.Secret(
            self, "JwtSecret",
            secret_name=self.jwt_secret_name,
            description="HS256 signing key for the session JWT (read by the api and ws Lambdas)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
        )
        self.database_url_secret = secretsmanager.Secret(
            self, "NeonDatabaseUrl",
            secret_name=f"{cfg.secret_prefix}neon-database-url",
            description="Neon Postgres connection string (postgresql://...?sslmode=require); "
            "set with put-secret-value after the first deploy",
        )
        self.mongo_url_secret = secretsmanager.Secret(
            self, "AtlasMongoUrl",
            secret_name=f"{cfg.secret_prefix}atlas-mongo-url",
            description="MongoDB Atlas connection string (mongodb+srv://...) for engine snapshots; "
            "set with put-secret-value after the first deploy",
        )
        acknowledge(
            self.jwt_secret, "AwsSolutions-SMG4",
            "Rotating the JWT signing key signs every user out; it is rotated by hand "
            "(put-secret-value, then restart the Lambdas) as docs/deployment.md describes.",
        )
        for secret, owner in ((self.database_url_secret, "Neon"), (self.mongo_url_secret, "MongoDB Atlas")):
            acknowledge(
                secret, "AwsSolutions-SMG4",
                f"The credential inside is issued and rotated by {owner}, outside AWS: a Secrets "
                "Manager rotation Lambda cannot change it. Rotation is a put-secret-value by the operator.",
            )

        # ------------------------------------------------------------ redis
        self.redis_sg = ec2.SecurityGroup(
            self, "RedisSg", vpc=vpc, allow_all_outbound=False,
            description="ElastiCache Redis: ingress only from the Lambda and engine security groups",
        )
        # clients open themselves with util.allow_to_redis (rules live in their stacks)
        self.redis_port = cfg.redis_port

        key = kms.Key(
            self, "RedisKey",
            description="ElastiCache Redis at-rest encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        subnets = elasticache.CfnSubnetGroup(
            self, "RedisSubnets",
            description="Opex Redis: isolated subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        params = elasticache.CfnParameterGroup(
            self, "RedisParams",
            cache_parameter_group_family="redis7",
            description="Opex: never evict (streams are the engine's input log)",
            properties={"maxmemory-policy": "noeviction"},
        )
        slow_log = logs.LogGroup(self, "RedisSlowLog", retention=retention(cfg.log_retention_days))

        nodes = 1 + cfg.redis_replicas
        self.redis = elasticache.CfnReplicationGroup(
            self, "Redis",
            replication_group_description=f"{cfg.name} engine streams, replies and read models",
            engine="redis",
            engine_version=REDIS_ENGINE_VERSION,
            cache_node_type=cfg.redis_node_type,
            num_cache_clusters=nodes,
            automatic_failover_enabled=nodes > 1,
            multi_az_enabled=nodes > 1,
            port=cfg.redis_port,
            cache_subnet_group_name=subnets.ref,
            cache_parameter_group_name=params.ref,
            security_group_ids=[self.redis_sg.security_group_id],
            at_rest_encryption_enabled=True,
            kms_key_id=key.key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=7,
            snapshot_window="03:00-04:00",
            preferred_maintenance_window="sun:04:30-sun:05:30",
            log_delivery_configurations=[
                elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                    destination_type="cloudwatch-logs",
                    log_format="json",
                    log_type="slow-log",
                    destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                        cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                            log_group=slow_log.log_group_name
                        )
                    ),
                )
            ],
        )
        # no AUTH token: see the acknowledgement for why and the docs for the follow-up
        acknowledge(
            self.redis, "AwsSolutions-AEC6",
            "No AUTH token: the processes take one REDIS_URL setting and have no secret-backed Redis "
            "password yet. Access is limited by security group to the Lambda and engine groups, in "
            "isolated subnets, with TLS required in transit; AUTH/IAM auth is a listed follow-up.",
        )
        if nodes == 1:
            acknowledge(
                self.redis, "AwsSolutions-AEC4",
                "Single-node Redis chosen with opex:redis_replicas=0 (a cost-saving dev deployment).",
            )

        self.redis_url = (
            f"rediss://{self.redis.attr_primary_end_point_address}:{self.redis.attr_primary_end_point_port}/0"
        )
        self.redis_id = self.redis.ref
