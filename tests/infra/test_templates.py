"""Assertions on the synthesized CloudFormation templates (cdk.json's context)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from opex_common.settings import Settings

pytestmark = pytest.mark.unit

# CloudFront managed policy ids (AWS documentation: "Use managed cache/origin request policies")
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"

# Environment variables the stacks set that are not Settings fields, and who reads them
EXTRA_ENV = {
    "DATABASE_URL_SECRET",  # api/ws Lambdas: Secrets Manager ARN of the Neon URL
    "WS_PUBLIC_URL",  # api Lambda: the wss:// URL GET /api/v1/config hands to the SPA
    "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL",
    "DEPLOYMENT",  # lag probe: the metrics' Deployment dimension
}
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def one(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))


def functions_by_handler(synth) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    out = {}
    for stack in ("api", "monitoring"):
        for fn in synth.resources(stack, "AWS::Lambda::Function").values():
            out[fn["Properties"]["Handler"]] = fn["Properties"]
    return out


# ---------------------------------------------------------------------------- network
def test_vpc_has_public_app_and_isolated_subnets_with_flow_logs(synth) -> None:
    t = synth.assertions("network")
    t.resource_count_is("AWS::EC2::VPC", 1)
    t.resource_count_is("AWS::EC2::NatGateway", 1)
    subnets = synth.resources("network", "AWS::EC2::Subnet")
    names = sorted(
        next(tag["Value"] for tag in s["Properties"]["Tags"] if tag["Key"] == "aws-cdk:subnet-name")
        for s in subnets.values()
    )
    assert names == ["app", "app", "data", "data", "public", "public"]
    public = [s for s in subnets.values() if s["Properties"].get("MapPublicIpOnLaunch")]
    assert len(public) == 2
    t.has_resource_properties("AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL",
                                                    "LogDestinationType": "cloud-watch-logs"})
    t.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


# ---------------------------------------------------------------------------- redis
def test_redis_is_encrypted_multi_az_in_isolated_subnets(synth) -> None:
    rg = one(synth.resources("data", "AWS::ElastiCache::ReplicationGroup"))["Properties"]
    assert rg["Engine"] == "redis"
    assert rg["AtRestEncryptionEnabled"] is True
    assert "KmsKeyId" in rg
    assert rg["TransitEncryptionEnabled"] is True
    assert rg["TransitEncryptionMode"] == "required"
    assert rg["NumCacheClusters"] == 2
    assert rg["MultiAZEnabled"] is True and rg["AutomaticFailoverEnabled"] is True
    assert rg["Port"] == 6390
    assert rg["SnapshotRetentionLimit"] >= 1

    subnet_group = one(synth.resources("data", "AWS::ElastiCache::SubnetGroup"))
    ids = dumps(subnet_group["Properties"]["SubnetIds"])
    assert "dataSubnet" in ids and "appSubnet" not in ids and "publicSubnet" not in ids

    params = one(synth.resources("data", "AWS::ElastiCache::ParameterGroup"))["Properties"]
    assert params["Properties"] == {"maxmemory-policy": "noeviction"}

    synth.assertions("data").has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_redis_security_group_admits_only_the_app_groups(synth) -> None:
    redis_sg = one(synth.resources("data", "AWS::EC2::SecurityGroup"))["Properties"]
    assert "SecurityGroupIngress" not in redis_sg
    # no egress: the placeholder rule CDK writes for allow_all_outbound=False
    assert redis_sg["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"
    sources = []
    for stack in ("api", "engine", "monitoring"):
        for rule in synth.resources(stack, "AWS::EC2::SecurityGroupIngress").values():
            p = rule["Properties"]
            assert "CidrIp" not in p, "no CIDR ingress anywhere"
            assert p["FromPort"] == p["ToPort"] == 6390
            assert "RedisSg" in dumps(p["GroupId"])
            sources.append((stack, p["SourceSecurityGroupId"]["Fn::GetAtt"][0]))
    assert sorted(s for s, _ in sources) == ["api", "engine", "monitoring"]


def test_no_security_group_anywhere_has_open_ingress(synth) -> None:
    for stack in synth.templates:
        for res in synth.templates[stack]["Resources"].values():
            if res["Type"] == "AWS::EC2::SecurityGroup":
                assert not res["Properties"].get("SecurityGroupIngress"), stack
            if res["Type"] == "AWS::EC2::SecurityGroupIngress":
                assert "CidrIp" not in res["Properties"] and "CidrIpv6" not in res["Properties"]


# ---------------------------------------------------------------------------- secrets
def test_secrets_for_jwt_neon_and_atlas(synth) -> None:
    secrets = synth.resources("data", "AWS::SecretsManager::Secret")
    names = sorted(s["Properties"]["Name"] for s in secrets.values())
    assert names == ["opex/atlas-mongo-url", "opex/jwt-signing-key", "opex/neon-database-url"]
    jwt = next(s for s in secrets.values() if s["Properties"]["Name"] == "opex/jwt-signing-key")
    assert jwt["Properties"]["GenerateSecretString"]["PasswordLength"] == 64


# ---------------------------------------------------------------------------- lambdas
def test_lambdas_run_python_in_private_subnets_with_layer_and_tracing(synth) -> None:
    fns = functions_by_handler(synth)
    assert {"opex_api.handler.handler", "opex_ws.handler.handler", "lag_probe.handler"} <= set(fns)
    for handler in ("opex_api.handler.handler", "opex_ws.handler.handler", "lag_probe.handler"):
        fn = fns[handler]
        assert fn["Runtime"] == "python3.12"
        assert fn["Architectures"] == ["arm64"]
        assert fn["TracingConfig"] == {"Mode": "Active"}
        assert len(fn["Layers"]) == 1
        subnets = dumps(fn["VpcConfig"]["SubnetIds"])
        assert "appSubnet" in subnets and "publicSubnet" not in subnets
    layer = one(synth.resources("api", "AWS::Lambda::LayerVersion"))["Properties"]
    assert layer["CompatibleRuntimes"] == ["python3.12"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


def test_lambda_environment_wiring(synth) -> None:
    fns = functions_by_handler(synth)
    api = fns["opex_api.handler.handler"]["Environment"]["Variables"]
    ws = fns["opex_ws.handler.handler"]["Environment"]["Variables"]
    for env in (api, ws):
        assert env["ENVIRONMENT"] == "aws"
        assert env["KEY_PREFIX"] == "opex"
        assert env["ENGINE_SHARDS"] == "1"
        assert env["JWT_SECRET_NAME"] == "opex/jwt-signing-key"
        assert "NeonDatabaseUrl" in dumps(env["DATABASE_URL_SECRET"])
        redis = dumps(env["REDIS_URL"])
        assert '"rediss://"' in redis and "RedisPrimaryEndPointAddress" in redis
        assert "DATABASE_URL" not in env and "JWT_SECRET" not in env, "no secret values in env"
    # the SPA gets the public wss:// URL; the ws Lambda the https callback URL of the same stage
    api_ws = dumps(api["WS_PUBLIC_URL"])
    assert '"wss://"' in api_ws and "WsApi" in api_ws and "/live" in api_ws
    callback = dumps(ws["WS_CALLBACK_URL"])
    assert '"https://"' in callback and "WsApi" in callback and "/live" in callback


def test_every_environment_variable_is_a_setting_or_a_known_extra(synth) -> None:
    names: set[str] = set()
    for fn in functions_by_handler(synth).values():
        names |= set(fn["Environment"]["Variables"])
    for task in synth.resources("engine", "AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            names |= {e["Name"] for e in container.get("Environment", [])}
            names |= {s["Name"] for s in container.get("Secrets", [])}
    unknown = names - SETTINGS_ENV - EXTRA_ENV
    assert not unknown, f"set but read by nobody: {unknown}"


def test_lambda_roles_are_least_privilege(synth) -> None:
    roles = synth.resources("api", "AWS::IAM::Role") | synth.resources("monitoring", "AWS::IAM::Role")
    for name, role in roles.items():
        if "BucketDeployment" in name:
            continue
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "iam::aws:policy" not in dumps(arn), f"{name} uses an AWS managed policy"
    allowed_star = {
        "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
        "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    }
    policies = synth.resources("api", "AWS::IAM::Policy")
    grants: dict[str, list[str]] = {}
    for name, policy in policies.items():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if st["Resource"] == "*":
                assert set(actions) <= allowed_star, (name, actions)
            if "secretsmanager:GetSecretValue" in actions:
                grants[name] = sorted(
                    "Jwt" if "JwtSecret" in dumps(r) else "Neon" if "NeonDatabaseUrl" in dumps(r) else "other"
                    for r in st["Resource"]
                )
    # api and ws read the JWT key and the Neon URL; nothing reads the Atlas URL from a Lambda
    assert sorted(grants.values()) == [["Jwt", "Neon"], ["Jwt", "Neon"]]

    push = one(synth.resources("api", "AWS::IAM::ManagedPolicy"))["Properties"]["PolicyDocument"]["Statement"]
    assert push[0]["Action"] == "execute-api:ManageConnections"
    assert dumps(push[0]["Resource"]).endswith('"/live/*/@connections/*"]]}')


def test_lambda_security_group_egress_only_to_needed_ports(synth) -> None:
    sg = next(
        v["Properties"] for k, v in synth.resources("api", "AWS::EC2::SecurityGroup").items() if k.startswith("LambdaSg")
    )
    assert not sg.get("SecurityGroupIngress")
    ports = sorted((r["FromPort"], r.get("CidrIp", "sg")) for r in sg["SecurityGroupEgress"])
    assert ports == [(443, "0.0.0.0/0"), (5432, "0.0.0.0/0"), (6390, "sg"), (27017, "0.0.0.0/0")]


# ---------------------------------------------------------------------------- APIs
def test_http_api_routes_api_prefix_to_the_api_lambda(synth) -> None:
    t = synth.assertions("api")
    t.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP", "Name": "opex-http"})
    t.has_resource_properties("AWS::ApiGatewayV2::Route", {"RouteKey": "ANY /api/{proxy+}"})
    t.has_resource_properties("AWS::ApiGatewayV2::Integration", {
        "IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0",
        "IntegrationUri": {"Fn::GetAtt": [Match.string_like_regexp("ApiFunction"), "Arn"]},
    })
    t.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "StageName": "$default", "AutoDeploy": True,
        "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
        "DefaultRouteSettings": {"ThrottlingRateLimit": 500, "ThrottlingBurstLimit": 1000},
    })


def test_websocket_api_routes_and_stage(synth) -> None:
    t = synth.assertions("api")
    t.has_resource_properties("AWS::ApiGatewayV2::Api", {
        "ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.type",
    })
    keys = sorted(r["Properties"]["RouteKey"] for r in synth.resources("api", "AWS::ApiGatewayV2::Route").values())
    assert keys == ["$connect", "$default", "$disconnect", "ANY /api/{proxy+}"]
    t.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "StageName": "live", "AutoDeploy": True,
        "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("connectionId")},
    })
    # every ws route goes to the ws Lambda
    for integ in synth.resources("api", "AWS::ApiGatewayV2::Integration").values():
        uri = dumps(integ["Properties"]["IntegrationUri"])
        assert "WsFunction" in uri or "ApiFunction" in uri


# ---------------------------------------------------------------------------- engine
def containers(synth, task_prefix: str) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    task = next(v for k, v in synth.resources("engine", "AWS::ECS::TaskDefinition").items()
                if k.startswith(task_prefix))
    return {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}


def test_cluster_has_container_insights(synth) -> None:
    synth.assertions("engine").has_resource_properties("AWS::ECS::Cluster", {
        "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
    })


def test_one_service_per_shard_never_two_tasks_at_once(synth) -> None:
    services = synth.resources("engine", "AWS::ECS::Service")
    assert sorted(s["Properties"]["ServiceName"] for s in services.values()) == ["opex-engine-0", "opex-workers"]
    for svc in services.values():
        p = svc["Properties"]
        assert p["DesiredCount"] == 1
        assert p["LaunchType"] == "FARGATE"
        dc = p["DeploymentConfiguration"]
        assert dc["MinimumHealthyPercent"] == 0 and dc["MaximumPercent"] == 100
        assert dc["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        net = p["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert net["AssignPublicIp"] == "DISABLED"
        assert "appSubnet" in dumps(net["Subnets"])


def test_engine_container_command_health_stop_and_env(synth) -> None:
    engine = containers(synth, "EngineShard0Task")["engine-0"]
    assert engine["Command"] == ["engine", "--shard", "0"]
    assert "EntryPoint" not in engine  # the image's: python -m opex_engine
    assert engine["StopTimeout"] == 120
    assert engine["HealthCheck"]["Command"] == ["CMD", "python", "-m", "opex_engine", "health", "--shard", "0"]
    assert engine["ReadonlyRootFilesystem"] is True
    assert engine["LinuxParameters"]["InitProcessEnabled"] is True
    assert engine["LogConfiguration"]["LogDriver"] == "awslogs"
    env = {e["Name"]: e["Value"] for e in engine["Environment"]}
    assert env["ENVIRONMENT"] == "aws" and env["KEY_PREFIX"] == "opex" and env["ENGINE_SHARDS"] == "1"
    assert env["PRICE_SOURCE"] == "auto"
    assert env["SNAPSHOT_INTERVAL_S"] == "5" and env["WS_PRICE_RATE_PER_S"] == "2"
    assert '"rediss://"' in dumps(env["REDIS_URL"])
    secrets = {s["Name"]: dumps(s["ValueFrom"]) for s in engine["Secrets"]}
    assert "NeonDatabaseUrl" in secrets["DATABASE_URL"] and "AtlasMongoUrl" in secrets["MONGO_URL"]
    assert "WS_CALLBACK_URL" not in env

    task = next(iter(synth.resources("engine", "AWS::ECS::TaskDefinition").values()))["Properties"]
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"


def test_workers_task_runs_migrate_then_poller_pusher_history(synth) -> None:
    workers = containers(synth, "WorkersTask")
    assert sorted(workers) == ["history", "migrate", "poller", "pusher"]
    assert workers["migrate"]["Essential"] is False
    assert workers["migrate"]["EntryPoint"] == ["python", "-c"]
    for name in ("poller", "pusher", "history"):
        c = workers[name]
        assert c["Command"] == [name]
        assert c["Essential"] is True and c["RestartPolicy"]["Enabled"] is True
        assert c["DependsOn"] == [{"Condition": "SUCCESS", "ContainerName": "migrate"}]
    pusher_env = {e["Name"]: e["Value"] for e in workers["pusher"]["Environment"]}
    callback = dumps(pusher_env["WS_CALLBACK_URL"])
    assert '"https://"' in callback and "WsApi" in callback and "/live" in callback
    assert "WS_CALLBACK_URL" not in {e["Name"] for e in workers["poller"]["Environment"]}


def test_task_roles_only_the_pusher_task_may_post_to_connections(synth) -> None:
    roles = synth.resources("engine", "AWS::IAM::Role")
    workers_role = next(v for k, v in roles.items() if k.startswith("WorkersTaskTaskRole"))
    assert "WsPushPolicy" in dumps(workers_role["Properties"]["ManagedPolicyArns"])
    engine_role = next(v for k, v in roles.items() if k.startswith("EngineShard0TaskTaskRole"))
    assert "ManagedPolicyArns" not in engine_role["Properties"]
    # the engine's task role has no policy at all: it calls no AWS API
    attached = dumps([p["Properties"]["Roles"] for p in synth.resources("engine", "AWS::IAM::Policy").values()])
    assert "EngineShard0TaskTaskRole" not in attached


def test_engine_image_is_a_docker_asset_built_from_the_repo_root(synth) -> None:
    images = synth.assets("engine")["dockerImages"]
    image = one(images)["source"]
    assert image["dockerFile"] == "engine_container/Dockerfile"
    assert image["dockerBuildTarget"] == "engine"
    assert image["platform"] == "linux/arm64"
    staged = synth.outdir / image["directory"]
    assert (staged / "engine_container" / "Dockerfile").exists()
    assert (staged / "layers" / "common" / "python" / "opex_common" / "settings.py").exists()
    for absent in (".venv", ".git", "cdk.out", "functions", "frontend", "tests"):
        assert not (staged / absent).exists(), f"{absent} leaked into the image build context"


# ---------------------------------------------------------------------------- web
def test_site_bucket_is_private_encrypted_and_behind_oac(synth) -> None:
    t = synth.assertions("web")
    buckets = synth.resources("web", "AWS::S3::Bucket")
    assert len(buckets) == 2
    for b in buckets.values():
        p = b["Properties"]
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"] == "AES256"
    t.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    for policy in synth.resources("web", "AWS::S3::BucketPolicy").values():
        assert "aws:SecureTransport" in dumps(policy)


def test_cloudfront_serves_spa_and_forwards_api_on_the_same_domain(synth) -> None:
    dist = one(synth.resources("web", "AWS::CloudFront::Distribution"))["Properties"]["DistributionConfig"]
    assert dist["DefaultRootObject"] == "index.html"
    assert dist["Logging"]["Bucket"]
    assert [b["PathPattern"] for b in dist["CacheBehaviors"]] == ["/api/*"]
    api = dist["CacheBehaviors"][0]
    assert api["CachePolicyId"] == CACHING_DISABLED
    assert api["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert api["ViewerProtocolPolicy"] == "https-only"
    assert set(api["AllowedMethods"]) >= {"GET", "POST", "DELETE", "OPTIONS", "PUT", "PATCH"}
    origin = next(o for o in dist["Origins"] if o["Id"] == api["TargetOriginId"])
    domain = dumps(origin["DomainName"])
    assert "HttpApi" in domain and ".execute-api." in domain
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    default = dist["DefaultCacheBehavior"]
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert default["FunctionAssociations"][0]["EventType"] == "viewer-request"
    s3_origin = next(o for o in dist["Origins"] if o["Id"] == default["TargetOriginId"])
    assert s3_origin["OriginAccessControlId"]
    # no custom error pages: they would turn API 404s into index.html
    assert "CustomErrorResponses" not in dist


def test_spa_deployment_uploads_the_build_and_invalidates(synth) -> None:
    deploy = one(synth.resources("web", "Custom::CDKBucketDeployment"))["Properties"]
    assert deploy["DistributionPaths"] == ["/*"]
    assert deploy["Prune"] is True


# ---------------------------------------------------------------------------- monitoring
def test_alarms_for_engine_lag_lambda_errors_and_5xx(synth) -> None:
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in
              synth.resources("monitoring", "AWS::CloudWatch::Alarm").values()}
    lag = alarms["opex-EngineLagShard0"]
    assert lag["Namespace"] == "Opex" and lag["MetricName"] == "EngineLagMs"
    assert {d["Name"]: d["Value"] for d in lag["Dimensions"]} == {"Deployment": "opex", "Shard": "0"}
    assert lag["Threshold"] == 2000 and lag["TreatMissingData"] == "breaching"
    for name in ("opex-ApiLambdaErrors", "opex-WsLambdaErrors"):
        assert alarms[name]["MetricName"] == "Errors"
    http = alarms["opex-Http5xx"]
    assert http["Namespace"] == "AWS/ApiGateway" and http["MetricName"] == "5xx"
    assert "opex-WsIntegrationErrors" in alarms
    assert "opex-EngineShard0NotRunning" in alarms and "opex-WorkersNotRunning" in alarms
    assert "opex-RedisMemoryNode1" in alarms and "opex-RedisMemoryNode2" in alarms
    for props in alarms.values():
        assert dumps(props["AlarmActions"]).startswith('[{"Ref": "Alarms')


def test_alarm_topic_is_encrypted_and_dashboard_exists(synth) -> None:
    t = synth.assertions("monitoring")
    t.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    t.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    t.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    t.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(1 minute)"})


def test_lag_probe_reaches_only_redis(synth) -> None:
    probe = functions_by_handler(synth)["lag_probe.handler"]
    assert probe["ReservedConcurrentExecutions"] == 1
    env = probe["Environment"]["Variables"]
    assert env["KEY_PREFIX"] == "opex" and env["ENGINE_SHARDS"] == "1" and env["DEPLOYMENT"] == "opex"
    sg = next(v["Properties"] for k, v in synth.resources("monitoring", "AWS::EC2::SecurityGroup").items()
              if k.startswith("ProbeSg"))
    assert [r["FromPort"] for r in sg["SecurityGroupEgress"]] == [6390]


# ---------------------------------------------------------------------------- variant
def test_shard_count_comes_from_context(synth_variant) -> None:
    services = synth_variant.resources("engine", "AWS::ECS::Service")
    assert sorted(s["Properties"]["ServiceName"] for s in services.values()) == [
        "opexdemo-engine-0", "opexdemo-engine-1", "opexdemo-engine-2", "opexdemo-workers",
    ]
    for shard in range(3):
        c = containers(synth_variant, f"EngineShard{shard}Task")[f"engine-{shard}"]
        assert c["Command"] == ["engine", "--shard", str(shard)]
        assert {e["Name"]: e["Value"] for e in c["Environment"]}["ENGINE_SHARDS"] == "3"
    alarms = {a["Properties"]["AlarmName"] for a in synth_variant.resources("monitoring", "AWS::CloudWatch::Alarm").values()}
    assert {f"opexdemo-EngineLagShard{s}" for s in range(3)} <= alarms


def test_variant_single_redis_node_x86_and_custom_domain(synth_variant) -> None:
    rg = one(synth_variant.resources("data", "AWS::ElastiCache::ReplicationGroup"))["Properties"]
    assert rg["NumCacheClusters"] == 1 and rg["MultiAZEnabled"] is False
    fn = next(iter(synth_variant.resources("api", "AWS::Lambda::Function").values()))["Properties"]
    assert fn["Architectures"] == ["x86_64"]
    task = next(iter(synth_variant.resources("engine", "AWS::ECS::TaskDefinition").values()))["Properties"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    assert one(synth_variant.assets("engine")["dockerImages"])["source"]["platform"] == "linux/amd64"
    dist = one(synth_variant.resources("web", "AWS::CloudFront::Distribution"))["Properties"]["DistributionConfig"]
    assert dist["Aliases"] == ["trade.example.com"]
    assert dist["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    # no SPA build: the stack still synthesizes, without the upload
    assert not synth_variant.resources("web", "Custom::CDKBucketDeployment")
    synth_variant.assertions("monitoring").has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
