"""Assemble the Opex stacks on a CDK app (used by app.py and the tests).

Deploy order follows the references: network -> data -> api -> engine, web,
monitoring. The data stack can be deployed alone first, to fill in the Neon
and Atlas secrets before anything reads them (docs/deployment.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from .api_stack import WS_STAGE, ApiStack
from .config import OpexConfig
from .data_stack import DataStack
from .engine_stack import EngineStack
from .monitoring_stack import MonitoringStack
from .network_stack import NetworkStack
from .web_stack import WebStack


@dataclass
class OpexStacks:
    cfg: OpexConfig
    network: NetworkStack
    data: DataStack
    api: ApiStack
    engine: EngineStack
    web: WebStack
    monitoring: MonitoringStack

    def all(self) -> list:
        return [self.network, self.data, self.api, self.engine, self.web, self.monitoring]


def build(app: App, *, nag: bool = True) -> OpexStacks:
    cfg = OpexConfig.from_context(app)
    n = cfg.name
    network = NetworkStack(app, f"{n}-network", cfg=cfg, description="Opex: VPC")
    data = DataStack(
        app, f"{n}-data", cfg=cfg, vpc=network.vpc,
        description="Opex: ElastiCache Redis and secrets",
    )
    api = ApiStack(
        app, f"{n}-api", cfg=cfg, vpc=network.vpc,
        redis_sg=data.redis_sg, redis_port=data.redis_port, redis_url=data.redis_url,
        jwt_secret=data.jwt_secret, jwt_secret_name=data.jwt_secret_name, database_url_secret=data.database_url_secret,
        description="Opex: API and WebSocket Lambdas, HTTP and WebSocket APIs",
    )
    engine = EngineStack(
        app, f"{n}-engine", cfg=cfg, vpc=network.vpc,
        redis_sg=data.redis_sg, redis_port=data.redis_port, redis_url=data.redis_url,
        database_url_secret=data.database_url_secret, mongo_url_secret=data.mongo_url_secret,
        ws_stage=api.ws_stage, ws_push_policy=api.ws_push_policy,
        description="Opex: engine shards, poller, pusher and history writer on ECS Fargate",
    )
    web = WebStack(
        app, f"{n}-web", cfg=cfg, http_api_domain=api.http_api_domain,
        description="Opex: SPA on S3 + CloudFront, /api/* to the HTTP API",
    )
    monitoring = MonitoringStack(
        app, f"{n}-monitoring", cfg=cfg, vpc=network.vpc,
        redis_sg=data.redis_sg, redis_port=data.redis_port, redis_url=data.redis_url,
        redis_id=data.redis_id, redis_nodes=1 + cfg.redis_replicas,
        layer=api.layer, api_function=api.api_function, ws_function=api.ws_function,
        http_api=api.http_api, ws_api=api.ws_api, ws_stage_name=WS_STAGE,
        cluster=engine.cluster, services=[*engine.engine_services, engine.workers_service],
        description="Opex: alarms, dashboard and the engine lag probe",
    )
    stacks = OpexStacks(cfg, network, data, api, engine, web, monitoring)
    for stack in stacks.all():
        Tags.of(stack).add("project", "opex")
        Tags.of(stack).add("deployment", n)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stacks
