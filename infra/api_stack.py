"""The API Lambda behind an HTTP API, and the WebSocket API with the ws Lambda.

Both Lambdas run in the private subnets (to reach ElastiCache) with NAT
egress (Neon, Atlas and Secrets Manager are reached over HTTPS / TLS), share
one layer (``opex_common`` + requirements.txt) and one code asset
(``functions/``), and each has its own role holding only what it uses.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .config import OpexConfig
from .layer_bundling import layer_code
from .util import acknowledge, allow_to_redis, logical_id, retention

WS_STAGE = "live"
# Internet endpoints the Lambdas and the engine call: HTTPS (Secrets Manager,
# CloudWatch, execute-api, Backpack), Postgres (Neon), MongoDB (Atlas).
EGRESS_PORTS = {443: "HTTPS: AWS APIs, Backpack", 5432: "Postgres: Neon", 27017: "MongoDB: Atlas"}

# EC2 actions a VPC-attached Lambda's role needs to manage its network
# interfaces (the content of AWSLambdaVPCAccessExecutionRole without its logs:*).
LAMBDA_ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


def runtime() -> lambda_.Runtime:
    # matches layer_bundling.LAMBDA_PYTHON (see there for why 3.12)
    return lambda_.Runtime.PYTHON_3_12


def architecture(cfg: OpexConfig) -> lambda_.Architecture:
    return lambda_.Architecture.ARM_64 if cfg.architecture == "arm64" else lambda_.Architecture.X86_64


def egress_security_group(scope: Construct, construct_id: str, vpc: ec2.IVpc, description: str) -> ec2.SecurityGroup:
    """A security group with no ingress and egress only to the ports in EGRESS_PORTS."""
    sg = ec2.SecurityGroup(scope, construct_id, vpc=vpc, allow_all_outbound=False, description=description)
    for port, why in EGRESS_PORTS.items():
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), why)
    return sg


def lambda_role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    """A role with ENI management and X-Ray only; logs and secrets are granted per resource."""
    role = iam.Role(
        scope, construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )
    role.add_to_policy(iam.PolicyStatement(actions=LAMBDA_ENI_ACTIONS, resources=["*"]))
    acknowledge(
        role, "AwsSolutions-IAM5[Resource::*]",
        "EC2 network-interface actions for a VPC-attached Lambda and the X-Ray PutTraceSegments/"
        "PutTelemetryRecords actions support no resource-level permissions, so they need Resource *.",
    )
    return role


class ApiStack(Stack):
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
        jwt_secret: secretsmanager.ISecret,
        jwt_secret_name: str,
        database_url_secret: secretsmanager.ISecret,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.cfg = cfg
        self._vpc = vpc

        self.lambda_sg = egress_security_group(
            self, "LambdaSg", vpc,
            "api and ws Lambdas: no ingress; egress to Redis, HTTPS, Neon and Atlas",
        )
        allow_to_redis(self.lambda_sg, redis_sg, redis_port, "api and ws Lambdas")

        self.layer = lambda_.LayerVersion(
            self, "CommonLayer",
            code=layer_code(cfg),
            compatible_runtimes=[runtime()],
            compatible_architectures=[architecture(cfg)],
            description="opex_common + requirements.txt",
        )
        code = lambda_.Code.from_asset(
            str(cfg.repo_root / "functions"),
            exclude=["**/__pycache__", "**/*.pyc", "**/tests", "**/.pytest_cache", "**/*.md"],
        )

        common_env = {
            "ENVIRONMENT": "aws",
            "REDIS_URL": redis_url,
            "KEY_PREFIX": cfg.key_prefix,
            "ENGINE_SHARDS": str(cfg.engine_shards),
            "JWT_SECRET_NAME": jwt_secret_name,
            "DATABASE_URL_SECRET": database_url_secret.secret_arn,
            "POWERTOOLS_METRICS_NAMESPACE": "Opex",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }

        # ------------------------------------------------------------ WebSocket API
        self.ws_api = apigwv2.WebSocketApi(
            self, "WsApi",
            api_name=f"{cfg.name}-ws",
            description="Opex live prices and account updates",
            route_selection_expression="$request.body.type",
        )
        ws_access_log = logs.LogGroup(self, "WsAccessLog", retention=retention(cfg.log_retention_days))
        self.ws_stage = apigwv2.WebSocketStage(
            self, "WsStage",
            web_socket_api=self.ws_api,
            stage_name=WS_STAGE,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=cfg.http_rate_limit, burst_limit=cfg.http_burst_limit),
            access_log_settings=AccessLogSettings(ws_access_log, WS_ACCESS_LOG_FIELDS),
        )

        self.ws_role = lambda_role(self, "WsRole", "ws Lambda: $connect/$disconnect/$default")
        self.ws_function = self._function(
            "WsFunction",
            role=self.ws_role,
            code=code,
            handler="opex_ws.handler.handler",
            memory=cfg.ws_memory_mib,
            timeout=Duration.seconds(10),
            environment={
                **common_env,
                "POWERTOOLS_SERVICE_NAME": "ws",
                "WS_CALLBACK_URL": self.ws_stage.callback_url,
            },
        )
        # Posting to this stage's @connections: the ws Lambda (replies to one client)
        # and the pusher in the engine stack (prices and account updates).
        self.ws_push_policy = iam.ManagedPolicy(
            self, "WsPushPolicy",
            description="execute-api:ManageConnections on the live stage of the Opex WebSocket API",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:ManageConnections"],
                    resources=[
                        self.format_arn(service="execute-api", resource=self.ws_api.api_id)
                        + f"/{WS_STAGE}/*/@connections/*"
                    ],
                )
            ],
        )
        ws_api_logical_id = logical_id(self.ws_api)
        acknowledge(
            self.ws_push_policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
            f"<{ws_api_logical_id}>/{WS_STAGE}/*/@connections/*]",
            "Connection ids are assigned by API Gateway at $connect, so the @connections resource ends in "
            "a wildcard; it is limited to this API and its live stage.",
        )
        self.ws_role.add_managed_policy(self.ws_push_policy)
        for secret in (jwt_secret, database_url_secret):
            secret.grant_read(self.ws_role)

        def ws_integration(route: str) -> integrations.WebSocketLambdaIntegration:
            return integrations.WebSocketLambdaIntegration(f"Ws{route}", self.ws_function)

        self.ws_api.add_route("$connect", integration=ws_integration("Connect"))
        self.ws_api.add_route("$disconnect", integration=ws_integration("Disconnect"))
        # return_response: what the handler returns for a message (pong, subscribed...) goes back to the client
        self.ws_api.add_route("$default", integration=ws_integration("Default"), return_response=True)
        acknowledge(
            self.ws_api, "AwsSolutions-APIG4",
            "The ws Lambda authenticates $connect itself (the httpOnly jwt cookie or a single-use ticket "
            "checked against Redis) and rejects the upgrade otherwise; $default and $disconnect only act "
            "on connections that passed $connect.",
        )

        # ------------------------------------------------------------ HTTP API
        self.api_role = lambda_role(self, "ApiRole", "api Lambda: FastAPI behind the HTTP API")
        self.api_function = self._function(
            "ApiFunction",
            role=self.api_role,
            code=code,
            handler="opex_api.handler.handler",
            memory=cfg.api_memory_mib,
            # the engine reply wait (REPLY_TIMEOUT_S, 3 s) plus Postgres reads, under API Gateway's 30 s
            timeout=Duration.seconds(15),
            reserved_concurrency=cfg.api_reserved_concurrency or None,
            environment={
                **common_env,
                "POWERTOOLS_SERVICE_NAME": "api",
                "WS_PUBLIC_URL": self.ws_stage.url,
            },
        )
        for secret in (jwt_secret, database_url_secret):
            secret.grant_read(self.api_role)

        self.http_api = apigwv2.HttpApi(
            self, "HttpApi",
            api_name=f"{cfg.name}-http",
            description="Opex REST API (/api/v1), reached through CloudFront",
            create_default_stage=False,
        )
        http_access_log = logs.LogGroup(self, "HttpAccessLog", retention=retention(cfg.log_retention_days))
        self.http_stage = apigwv2.HttpStage(
            self, "HttpStage",
            http_api=self.http_api,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=cfg.http_rate_limit, burst_limit=cfg.http_burst_limit),
            access_log_settings=AccessLogSettings(http_access_log, HTTP_ACCESS_LOG_FIELDS),
        )
        self.http_api.add_routes(
            path="/api/{proxy+}",
            methods=[apigwv2.HttpMethod.ANY],
            integration=integrations.HttpLambdaIntegration(
                "ApiIntegration", self.api_function,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            ),
        )
        acknowledge(
            self.http_api, "AwsSolutions-APIG4",
            "The FastAPI app authorizes each route itself from the httpOnly jwt cookie (signin, signup, "
            "markets and candles are public by design); a gateway authorizer would duplicate that check.",
        )

        self.http_api_domain = f"{self.http_api.api_id}.execute-api.{self.region}.{self.url_suffix}"

        CfnOutput(self, "HttpApiUrl", value=self.http_api.api_endpoint)
        CfnOutput(self, "WebSocketUrl", value=self.ws_stage.url)
        CfnOutput(self, "WebSocketCallbackUrl", value=self.ws_stage.callback_url)

    def _function(
        self,
        construct_id: str,
        *,
        role: iam.Role,
        code: lambda_.Code,
        handler: str,
        memory: int,
        timeout: Duration,
        environment: dict[str, str],
        reserved_concurrency: int | None = None,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(self, f"{construct_id}Logs", retention=retention(self.cfg.log_retention_days))
        function = lambda_.Function(
            self, construct_id,
            runtime=runtime(),
            architecture=architecture(self.cfg),
            handler=handler,
            code=code,
            layers=[self.layer],
            role=role,
            memory_size=memory,
            timeout=timeout,
            environment=environment,
            reserved_concurrent_executions=reserved_concurrency,
            vpc=self._vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.lambda_sg],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
        )
        log_group.grant_write(role)
        acknowledge(
            function, "AwsSolutions-L1",
            "Python 3.12 on purpose: the oldest runtime on Amazon Linux 2023 (glibc 2.34, needed by the "
            "layer's manylinux_2_28 wheels) and the nearest to the 3.11 the code is tested on; newer "
            "runtimes are adopted together with the engine image and the test interpreter.",
        )
        return function


# JSON access-log lines (one CloudWatch Logs Insights query for both APIs)
HTTP_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "requestTime": "$context.requestTimeEpoch",
}
WS_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "connectionId": "$context.connectionId",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "integrationLatencyMs": "$context.integrationLatency",
    "error": "$context.error.message",
    "requestTime": "$context.requestTimeEpoch",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogSettings:
    """Access logs of an API Gateway v2 stage: JSON lines to a CloudWatch log group."""

    def __init__(self, log_group: logs.ILogGroup, fields: dict[str, str]) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._format = apigw.AccessLogFormat.custom(json.dumps(fields, separators=(",", ":")))

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format
