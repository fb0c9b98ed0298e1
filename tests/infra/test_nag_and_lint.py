"""cdk-nag (AwsSolutions) with every finding fixed or acknowledged with a reason, and cfn-lint."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit

# W3005 (redundant DependsOn): aws-cdk-lib writes DependsOn on a Lambda's role and
# its default policy on purpose, so the policy exists before the function runs;
# cfn-lint flags the role half as redundant with the GetAtt. Nothing else is ignored.
CFN_LINT_IGNORED = ["W3005"]


def _violations(report) -> list[str]:  # type: ignore[no-untyped-def]
    if report is None:
        return []
    out = []
    for plugin in report.get("pluginReports", []):
        for v in plugin.get("violations", []):
            for c in v["violatingConstructs"]:
                out.append(f"{v['ruleName']} at {c['constructPath']}: {v['description']}")
    return out


@pytest.mark.parametrize("variant", ["synth", "synth_variant"])
def test_cdk_nag_aws_solutions_has_no_unacknowledged_finding(variant: str, request: pytest.FixtureRequest) -> None:
    synth = request.getfixturevalue(variant)
    violations = _violations(synth.validation_report())
    # the one expected warning: the variant synthesizes without a built SPA on purpose
    violations = [v for v in violations if not v.startswith("Annotation::opex:spa-not-built")]
    assert synth.error is None and not violations, "\n".join(violations) or synth.error


def test_every_acknowledgement_has_a_reason(synth) -> None:
    assert synth.acknowledgements, "the nag pack ran with acknowledgements"
    for path, rule, reason in synth.acknowledgements:
        assert rule.startswith("AwsSolutions-"), (path, rule)
        assert len(reason) >= 40, (path, rule, reason)
    print(f"\n{len(synth.acknowledgements)} cdk-nag acknowledgements:")
    for path, rule, _ in synth.acknowledgements:
        print(f"  {rule:<40} {path}")


@pytest.mark.parametrize("variant", ["synth", "synth_variant"])
def test_cfn_lint_is_clean(variant: str, request: pytest.FixtureRequest) -> None:
    from cfnlint.api import ManualArgs, lint_file

    synth = request.getfixturevalue(variant)
    config = ManualArgs(ignore_checks=CFN_LINT_IGNORED, regions=["us-east-1", "eu-west-1"])
    problems = [
        f"{stack}: {match}"
        for stack in synth.templates
        for match in lint_file(synth.outdir / f"{stack}.template.json", config=config)
    ]
    assert not problems, "\n".join(problems)


def test_every_acknowledgement_answers_a_real_finding(synth, synth_unacknowledged) -> None:
    """No blanket or stale acknowledgement: each one silences a finding cdk-nag really reports."""
    report = synth_unacknowledged.validation_report()
    findings = set()
    for plugin in report["pluginReports"]:
        for v in plugin["violations"]:
            for c in v["violatingConstructs"]:
                findings.add((v["ruleName"], c["constructPath"]))
    for path, rule, _ in synth.acknowledgements:
        assert any(r == rule and (p == path or p.startswith(path + "/")) for r, p in findings), (rule, path)
    acknowledged = {(rule, path) for path, rule, _ in synth.acknowledgements}
    for rule, p in findings:
        if rule.startswith("AwsSolutions-"):
            assert any(rule == r and (p == a or p.startswith(a + "/")) for r, a in acknowledged), (rule, p)
