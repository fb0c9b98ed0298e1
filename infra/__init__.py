"""Opex on AWS: the CDK stacks (see docs/deployment.md)."""
