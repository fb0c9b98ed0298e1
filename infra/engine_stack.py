"""The engine container on ECS Fargate.

One service per engine shard (``opex:engine_shards``), each running exactly one
task: a shard's engine must never run twice at once (two consumers of one
stream would split its input), so a deployment stops the old task (the engine
snapshots on SIGTERM, within the 120 s stop timeout) before starting the new
one, which boots from that snapshot. The poller, the WebSocket pusher and the
history writer run once, as three containers of a separate ``workers`` service,
so that redeploying them never stops a shard.

No ingress anywhere: the tasks only connect out (Redis, Neon, Atlas, Backpack,
the WebSocket API's @connections endpoint).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from . import processes
from .api_stack import egress_security_group
from .config import OpexConfig
from .util import acknowledge, allow_to_redis, retention

DOCKERFILE = "engine_container/Dockerfile"


class EngineStack(Stack):
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
        database_url_secret: secretsmanager.ISecret,
        mongo_url_secret: secretsmanager.ISecret,
        ws_stage: apigwv2.WebSocketStage,
        ws_push_policy: iam.IManagedPolicy,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.cfg = cfg

        self.cluster = ecs.Cluster(
            self, "Cluster",
            vpc=vpc,
            cluster_name=f"{cfg.name}-engine",
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_sg = egress_security_group(
            self, "TaskSg", vpc, "engine tasks: no ingress; egress to Redis, HTTPS, Neon and Atlas"
        )
        allow_to_redis(self.task_sg, redis_sg, redis_port, "engine, poller, pusher, history")

        # Built and pushed by `cdk deploy` (cdk-assets); `cdk synth` only stages the context.
        # The context is the repository root, filtered by its .dockerignore.
        self.image = ecr_assets.DockerImageAsset(
            self, "Image",
            directory=str(cfg.repo_root),
            file=DOCKERFILE,
            target="engine",
            # functions/ is in the build context only for docker compose's `local` stage:
            # leave it out here so an API change does not produce a new engine image
            exclude=["functions", "frontend"],
            platform=(
                ecr_assets.Platform.LINUX_ARM64 if cfg.architecture == "arm64" else ecr_assets.Platform.LINUX_AMD64
            ),
        )
        image = ecs.ContainerImage.from_docker_image_asset(self.image)

        self.container_env = {
            "ENVIRONMENT": "aws",
            "REDIS_URL": redis_url,
            "KEY_PREFIX": cfg.key_prefix,
            "ENGINE_SHARDS": str(cfg.engine_shards),
            "PRICE_SOURCE": cfg.price_source,
            "SNAPSHOT_INTERVAL_S": str(cfg.snapshot_interval_s),
            "WS_PRICE_RATE_PER_S": str(cfg.ws_price_rate_per_s),
        }
        self.container_secrets = {
            "DATABASE_URL": ecs.Secret.from_secrets_manager(database_url_secret),
            "MONGO_URL": ecs.Secret.from_secrets_manager(mongo_url_secret),
        }
        self.ws_callback_url = ws_stage.callback_url

        self.engine_services: list[ecs.FargateService] = []
        self.log_groups: dict[str, logs.LogGroup] = {}
        for shard in range(cfg.engine_shards):
            proc = processes.engine(shard)
            task = self._task_definition(f"EngineShard{shard}Task", cfg.engine_cpu, cfg.engine_memory_mib)
            self._add_container(task, proc, image, restart=False)
            self.engine_services.append(self._service(f"EngineShard{shard}", task, f"{cfg.name}-engine-{shard}"))

        workers = self._task_definition("WorkersTask", cfg.workers_cpu, cfg.workers_memory_mib)
        migrate = self._add_container(workers, processes.MIGRATE, image, restart=False)
        for proc in processes.WORKERS:
            container = self._add_container(workers, proc, image, restart=True)
            container.add_container_dependencies(
                ecs.ContainerDependency(container=migrate, condition=ecs.ContainerDependencyCondition.SUCCESS)
            )
        # the pusher posts to @connections of the WebSocket stage, and only that stage
        workers.task_role.add_managed_policy(ws_push_policy)
        self.workers_service = self._service("Workers", workers, f"{cfg.name}-workers")

    # ------------------------------------------------------------------ helpers
    def _task_definition(self, construct_id: str, cpu: int, memory: int) -> ecs.FargateTaskDefinition:
        task = ecs.FargateTaskDefinition(
            self, construct_id,
            cpu=cpu,
            memory_limit_mib=memory,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=(
                    ecs.CpuArchitecture.ARM64 if self.cfg.architecture == "arm64" else ecs.CpuArchitecture.X86_64
                ),
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        acknowledge(
            task.obtain_execution_role(), "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken, which the execution role needs to pull the image, supports no "
            "resource-level permission; the image pull itself is limited to the asset repository.",
        )
        # a writable /tmp on an otherwise read-only root filesystem
        task.add_volume(name="tmp")
        acknowledge(
            task, "AwsSolutions-ECS2",
            "Only non-secret configuration is in environment variables (Redis endpoint, key prefix, "
            "shard count, price source, callback URL); the Neon and Atlas URLs come from Secrets Manager.",
        )
        return task

    def _add_container(
        self, task: ecs.FargateTaskDefinition, proc: processes.Process, image: ecs.ContainerImage, *, restart: bool
    ) -> ecs.ContainerDefinition:
        log_group = logs.LogGroup(
            self, f"{proc.name.title().replace('-', '')}Logs",
            log_group_name=f"/{self.cfg.name}/engine/{proc.name}",
            retention=retention(self.cfg.log_retention_days),
        )
        self.log_groups[proc.name] = log_group
        environment = dict(self.container_env)
        if proc.pushes_to_websocket:
            environment["WS_CALLBACK_URL"] = self.ws_callback_url
        container = task.add_container(
            proc.name,
            container_name=proc.name,
            image=image,
            entry_point=None if proc.entrypoint == processes.ENTRYPOINT else list(proc.entrypoint),
            command=list(proc.args),
            environment=environment,
            secrets=self.container_secrets,
            # a one-shot container exits when done; the task goes on
            essential=not proc.one_shot,
            readonly_root_filesystem=True,
            stop_timeout=Duration.seconds(proc.stop_timeout_s),
            linux_parameters=ecs.LinuxParameters(self, f"{proc.name.title().replace('-', '')}Linux", init_process_enabled=True),
            health_check=None if proc.health_command is None else ecs.HealthCheck(
                command=["CMD", *proc.health_command],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(10),
                retries=3,
                start_period=Duration.seconds(proc.start_period_s),
            ),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=proc.name,
                log_group=log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=None,
            ),
            enable_restart_policy=restart or None,
            restart_attempt_period=Duration.seconds(60) if restart else None,
        )
        container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
        return container

    def _service(self, construct_id: str, task: ecs.FargateTaskDefinition, name: str) -> ecs.FargateService:
        return ecs.FargateService(
            self, construct_id,
            cluster=self.cluster,
            task_definition=task,
            service_name=name,
            desired_count=1,
            # never two copies at once: stop (and snapshot) before starting the new task
            min_healthy_percent=0,
            max_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            security_groups=[self.task_sg],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
            platform_version=ecs.FargatePlatformVersion.LATEST,
        )
