"""Small helpers shared by the stacks."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import IConstruct

_RETENTION_DAYS = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS, 150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS, 545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS, 1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS, 3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention period that keeps ``days`` days."""
    for value in sorted(_RETENTION_DAYS):
        if value >= days:
            return _RETENTION_DAYS[value]
    return logs.RetentionDays.TEN_YEARS


# every acknowledgement made while building the app: (construct path, rule, reason)
ACKNOWLEDGEMENTS: list[tuple[str, str, str]] = []


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and what it contains), with the why."""
    if len(reason) < 20:
        raise ValueError(f"acknowledgement of {rule} needs a real reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
    ACKNOWLEDGEMENTS.append((scope.node.path, rule, reason))


def allow_to_redis(client_sg: ec2.SecurityGroup, redis_sg: ec2.ISecurityGroup, port: int, who: str) -> None:
    """Let ``client_sg`` reach Redis: egress on the client, ingress on Redis.

    Both rules are created in the client's stack, so the data stack never
    depends on its consumers (no cross-stack cycle).
    """
    client_sg.add_egress_rule(ec2.Peer.security_group_id(redis_sg.security_group_id), ec2.Port.tcp(port), "Redis")
    ec2.CfnSecurityGroupIngress(
        client_sg, "RedisIngress",
        group_id=redis_sg.security_group_id,
        source_security_group_id=client_sg.security_group_id,
        ip_protocol="tcp", from_port=port, to_port=port,
        description=f"Redis from {who}",
    )


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of an L2 construct's resource (as cdk-nag names it)."""
    resource = construct.node.default_child
    assert isinstance(resource, CfnElement)
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(resource)))
