"""The VPC: public subnets for the NAT gateways only, private subnets with NAT
egress for the Lambdas and Fargate tasks (Neon, Atlas and Backpack are on the
internet), isolated subnets for ElastiCache. Flow logs go to CloudWatch Logs.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from .config import OpexConfig
from .util import retention


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, cfg: OpexConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)

        flow_logs = logs.LogGroup(
            self, "FlowLogs",
            retention=retention(cfg.log_retention_days),
        )
        self.vpc = ec2.Vpc(
            self, "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=cfg.max_azs,
            nat_gateways=cfg.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )
        # ECR image layers and S3 traffic stay off the NAT gateway (free endpoint)
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
        )

