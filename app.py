#!/usr/bin/env python3
"""CDK entry point: `cdk synth` / `cdk deploy` (settings in cdk.json's context, see docs/deployment.md)."""

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402

from infra.opex_app import build  # noqa: E402

app = App()
build(app)
app.synth()
