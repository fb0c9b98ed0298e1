"""Alarms, a dashboard, and the engine-lag probe.

The engine's lag is measured from outside the engine: a small scheduled
Lambda (infra/lag_probe) reads each shard's consumer-group state from Redis
every minute and writes ``Opex/EngineLagMs`` and friends as embedded metrics.
Alarms go to an encrypted SNS topic (optionally e-mailed, ``opex:alarm_email``).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from .api_stack import architecture, lambda_role, runtime
from .config import OpexConfig
from .util import acknowledge, allow_to_redis, retention

NAMESPACE = "Opex"
ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# history may lag while Postgres (Neon) is down without harm to trading; page after 10 minutes
HISTORY_LAG_ALARM_MS = 600_000


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cfg: OpexConfig,
        vpc: ec2.IVpc,
        redis_sg: ec2.ISecurityGroup,
        redis_port: int,
        redis_url: str,
        redis_id: str,
        redis_nodes: int,
        layer: lambda_.ILayerVersion,
        api_function: lambda_.IFunction,
        ws_function: lambda_.IFunction,
        http_api: apigwv2.IHttpApi,
        ws_api: apigwv2.IWebSocketApi,
        ws_stage_name: str,
        cluster: ecs.ICluster,
        services: list[ecs.FargateService],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.cfg = cfg
        deployment = cfg.name

        # ------------------------------------------------------------ alarm topic
        key = kms.Key(
            self, "AlarmTopicKey",
            description="Opex alarm topic encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes to an encrypted topic only if the key lets it
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Alarms", display_name=f"{cfg.name} alarms", master_key=key, enforce_ssl=True)
        if cfg.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(cfg.alarm_email))
        action = cw_actions.SnsAction(self.topic)

        # ------------------------------------------------------------ lag probe
        probe_sg = ec2.SecurityGroup(
            self, "ProbeSg", vpc=vpc, allow_all_outbound=False,
            description="engine lag probe: no ingress; egress to Redis only",
        )
        allow_to_redis(probe_sg, redis_sg, redis_port, "engine lag probe")
        probe_role = lambda_role(self, "ProbeRole", "engine lag probe: reads stream groups from Redis")
        probe_logs = logs.LogGroup(self, "ProbeLogs", retention=retention(cfg.log_retention_days))
        probe_logs.grant_write(probe_role)
        self.probe = lambda_.Function(
            self, "LagProbe",
            runtime=runtime(),
            architecture=architecture(cfg),
            handler="lag_probe.handler",
            code=lambda_.Code.from_asset(
                str(cfg.repo_root / "infra" / "lag_probe"), exclude=["**/__pycache__", "**/*.pyc"]
            ),
            layers=[layer],
            role=probe_role,
            memory_size=256,
            timeout=Duration.seconds(30),
            # one probe at a time is plenty
            reserved_concurrent_executions=1,
            environment={
                "REDIS_URL": redis_url,
                "KEY_PREFIX": cfg.key_prefix,
                "ENGINE_SHARDS": str(cfg.engine_shards),
                "DEPLOYMENT": deployment,
            },
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[probe_sg],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=probe_logs,
        )
        acknowledge(
            self.probe, "AwsSolutions-L1",
            "Python 3.12 on purpose: it shares the layer whose wheels are built for 3.12 with the api and "
            "ws Lambdas (see infra/layer_bundling.py).",
        )
        events.Rule(
            self, "ProbeSchedule",
            schedule=events.Schedule.rate(ONE_MINUTE),
            targets=[targets.LambdaFunction(self.probe, retry_attempts=0)],
        )

        # ------------------------------------------------------------ alarms
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(construct_id: str, metric: cloudwatch.IMetric, threshold: float, *, periods: int,
                  description: str, missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
                  comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                  ) -> cloudwatch.Alarm:
            a = cloudwatch.Alarm(
                self, construct_id,
                alarm_name=f"{cfg.name}-{construct_id}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                comparison_operator=comparison,
                treat_missing_data=missing,
            )
            a.add_alarm_action(action)
            a.add_ok_action(action)
            self.alarms.append(a)
            return a

        lag_metrics: list[cloudwatch.IMetric] = []
        for shard in range(cfg.engine_shards):
            dims = {"Deployment": deployment, "Shard": str(shard)}
            engine_lag = cloudwatch.Metric(
                namespace=NAMESPACE, metric_name="EngineLagMs", dimensions_map=dims,
                statistic="Maximum", period=ONE_MINUTE,
            )
            lag_metrics.append(engine_lag.with_(label=f"shard {shard}"))
            alarm(
                f"EngineLagShard{shard}", engine_lag, cfg.engine_lag_alarm_ms, periods=3,
                # no data = the probe (or Redis) is down: that is an alarm too
                missing=cloudwatch.TreatMissingData.BREACHING,
                description=f"Engine shard {shard} is more than {cfg.engine_lag_alarm_ms} ms behind its "
                "input stream for 3 minutes (or the lag probe stopped reporting).",
            )
            alarm(
                f"HistoryLagShard{shard}",
                cloudwatch.Metric(
                    namespace=NAMESPACE, metric_name="HistoryLagMs", dimensions_map=dims,
                    statistic="Maximum", period=ONE_MINUTE,
                ),
                HISTORY_LAG_ALARM_MS, periods=5,
                description=f"The history writer is more than 10 minutes behind shard {shard}'s events "
                "(Postgres unreachable?). Trading goes on; history is delayed, not lost.",
            )

        for name, fn in (("Api", api_function), ("Ws", ws_function)):
            alarm(
                f"{name}LambdaErrors",
                fn.metric_errors(period=FIVE_MINUTES, statistic="Sum"), 5, periods=1,
                description=f"The {name.lower()} Lambda raised 5 or more errors in 5 minutes.",
            )
            alarm(
                f"{name}LambdaThrottles",
                fn.metric_throttles(period=FIVE_MINUTES, statistic="Sum"), 1, periods=1,
                description=f"The {name.lower()} Lambda was throttled (concurrency limit reached).",
            )
        alarm(
            "ProbeLambdaErrors", self.probe.metric_errors(period=ONE_MINUTE, statistic="Sum"), 1, periods=3,
            description="The engine lag probe failed 3 minutes in a row (Redis unreachable?).",
        )

        http_5xx = cloudwatch.Metric(
            namespace="AWS/ApiGateway", metric_name="5xx",
            dimensions_map={"ApiId": http_api.api_id, "Stage": "$default"},
            statistic="Sum", period=FIVE_MINUTES,
        )
        alarm("Http5xx", http_5xx, 10, periods=1,
              description="The HTTP API returned 10 or more 5xx responses in 5 minutes.")
        ws_errors = cloudwatch.Metric(
            namespace="AWS/ApiGateway", metric_name="IntegrationError",
            dimensions_map={"ApiId": ws_api.api_id, "Stage": ws_stage_name},
            statistic="Sum", period=FIVE_MINUTES,
        )
        alarm("WsIntegrationErrors", ws_errors, 10, periods=1,
              description="The WebSocket API saw 10 or more integration errors in 5 minutes.")

        running_metrics: list[cloudwatch.IMetric] = []
        for service in services:
            running = cloudwatch.Metric(
                namespace="ECS/ContainerInsights", metric_name="RunningTaskCount",
                dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": service.service_name},
                statistic="Minimum", period=ONE_MINUTE,
            )
            running_metrics.append(running)
            alarm(
                f"{service.node.id}NotRunning", running, 1, periods=5,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cloudwatch.TreatMissingData.BREACHING,
                description=f"No running task for ECS service {service.node.id} for 5 minutes.",
            )

        redis_cpu: list[cloudwatch.IMetric] = []
        redis_mem: list[cloudwatch.IMetric] = []
        for node in range(1, redis_nodes + 1):
            dims = {"CacheClusterId": f"{redis_id}-{node:03d}"}
            cpu = cloudwatch.Metric(namespace="AWS/ElastiCache", metric_name="EngineCPUUtilization",
                                    dimensions_map=dims, statistic="Average", period=FIVE_MINUTES)
            mem = cloudwatch.Metric(namespace="AWS/ElastiCache", metric_name="DatabaseMemoryUsagePercentage",
                                    dimensions_map=dims, statistic="Maximum", period=FIVE_MINUTES)
            redis_cpu.append(cpu.with_(label=f"node {node}"))
            redis_mem.append(mem.with_(label=f"node {node}"))
            alarm(f"RedisCpuNode{node}", cpu, 80, periods=3,
                  description="Redis engine CPU above 80% for 15 minutes: scale the node type.")
            alarm(f"RedisMemoryNode{node}", mem, 80, periods=1,
                  description="Redis memory above 80% (noeviction: at 100% every write fails).")

        # ------------------------------------------------------------ dashboard
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{cfg.name}-overview")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Engine lag (ms, max per minute)", left=lag_metrics, width=12),
            cloudwatch.GraphWidget(
                title="Engine backlog (entries)", width=12,
                left=[
                    cloudwatch.Metric(namespace=NAMESPACE, metric_name="EngineBacklog",
                                      dimensions_map={"Deployment": deployment, "Shard": str(s)},
                                      statistic="Maximum", period=ONE_MINUTE, label=f"shard {s}")
                    for s in range(cfg.engine_shards)
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="HTTP API", width=8,
                left=[
                    cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name="Count",
                                      dimensions_map={"ApiId": http_api.api_id, "Stage": "$default"},
                                      statistic="Sum", period=ONE_MINUTE, label="requests"),
                    http_5xx.with_(period=ONE_MINUTE, label="5xx"),
                ],
                right=[
                    cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name="Latency",
                                      dimensions_map={"ApiId": http_api.api_id, "Stage": "$default"},
                                      statistic="p99", period=ONE_MINUTE, label="p99 latency (ms)"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Lambdas", width=8,
                left=[api_function.metric_invocations(label="api invocations"),
                      ws_function.metric_invocations(label="ws invocations")],
                right=[api_function.metric_errors(label="api errors"),
                       ws_function.metric_errors(label="ws errors")],
            ),
            cloudwatch.GraphWidget(
                title="WebSocket", width=8,
                left=[
                    cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name=m,
                                      dimensions_map={"ApiId": ws_api.api_id, "Stage": ws_stage_name},
                                      statistic="Sum", period=ONE_MINUTE, label=m)
                    for m in ("ConnectCount", "MessageCount", "IntegrationError", "ClientError")
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="ECS running tasks", left=running_metrics, width=8),
            cloudwatch.GraphWidget(title="Redis engine CPU %", left=redis_cpu, width=8),
            cloudwatch.GraphWidget(title="Redis memory %", left=redis_mem, width=8),
        )
