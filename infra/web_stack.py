"""The SPA on S3 + CloudFront, with the REST API behind the same domain.

``/api/*`` goes to the HTTP API (no caching, every viewer header but Host,
cookies and query strings forwarded), everything else to the private S3
bucket through Origin Access Control. Serving both from one domain makes the
``jwt`` cookie first-party. Client-side routes (paths without a file
extension) are rewritten to ``/index.html`` by a CloudFront Function on the
default behaviour only, so API errors (404, 409...) reach the SPA unchanged.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from .config import OpexConfig
from .util import acknowledge, logical_id

SPA_REWRITE = """\
function handler(event) {
  var request = event.request;
  // /trade/BTC_USDC_PERP -> /index.html; /assets/app.3f2a.js stays as it is
  if (!/\\.[A-Za-z0-9]+$/.test(request.uri)) {
    request.uri = '/index.html';
  }
  return request;
}
"""


class WebStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cfg: OpexConfig,
        http_api_domain: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.log_bucket = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # CloudFront standard logs are written with an ACL grant
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # (cdk-nag's S1 exempts a bucket that is itself a log destination)

        self.site_bucket = s3.Bucket(
            self, "Site",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3-site/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self._site_bucket_id = logical_id(self.site_bucket)

        spa_rewrite = cloudfront.Function(
            self, "SpaRewrite",
            code=cloudfront.FunctionCode.from_inline(SPA_REWRITE),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
            comment="Client-side routes -> /index.html",
        )
        api_origin = origins.HttpOrigin(
            http_api_domain,
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
        )

        domain_props: dict[str, Any] = {}
        if cfg.domain_name:
            domain_props = {
                "domain_names": [cfg.domain_name],
                "certificate": acm.Certificate.from_certificate_arn(self, "Certificate", cfg.certificate_arn),
                "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            }

        self.distribution = cloudfront.Distribution(
            self, "Cdn",
            comment=f"{cfg.name}: SPA + /api",
            default_root_object="index.html",
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.site_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=spa_rewrite, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST
                    )
                ],
            ),
            additional_behaviors={
                "/api/*": cloudfront.BehaviorOptions(
                    origin=api_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                    response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                    compress=True,
                ),
            },
            **domain_props,
        )
        acknowledge(
            self.distribution, "AwsSolutions-CFR1",
            "Paper trading is open to every country; there is no geographic restriction to apply.",
        )
        acknowledge(
            self.distribution, "AwsSolutions-CFR2",
            "A CloudFront WAF web ACL must live in us-east-1 and these stacks are region-agnostic; "
            "the HTTP API stage is throttled and the app rate-limits signin/signup. Adding a WAF is "
            "described in docs/deployment.md.",
        )
        if not cfg.domain_name:
            acknowledge(
                self.distribution, "AwsSolutions-CFR4",
                "Without opex:domain_name the distribution uses the default *.cloudfront.net certificate, "
                "whose security policy CloudFront fixes at TLSv1; with a domain, TLSv1.2_2021 is set.",
            )

        spa_dir = cfg.spa_dir
        if spa_dir.is_dir() and (spa_dir / "index.html").exists():
            deployment = s3deploy.BucketDeployment(
                self, "SpaDeployment",
                sources=[s3deploy.Source.asset(str(spa_dir))],
                destination_bucket=self.site_bucket,
                distribution=self.distribution,
                distribution_paths=["/*"],
                prune=True,
                memory_limit=512,
            )
            self.spa_deployment: s3deploy.BucketDeployment | None = deployment
            self._acknowledge_deployment_handler()
        else:
            self.spa_deployment = None
            Annotations.of(self).add_warning_v2(
                "opex:spa-not-built",
                f"{spa_dir} has no index.html: the SPA is not uploaded. Build the frontend "
                "(see docs/deployment.md) and deploy again.",
            )

        self.url = (
            f"https://{cfg.domain_name}" if cfg.domain_name else f"https://{self.distribution.distribution_domain_name}"
        )
        CfnOutput(self, "SiteUrl", value=self.url)
        CfnOutput(self, "SiteBucketName", value=self.site_bucket.bucket_name)
        CfnOutput(self, "DistributionId", value=self.distribution.distribution_id)

    def _acknowledge_deployment_handler(self) -> None:
        """BucketDeployment's upload Lambda is CDK's own singleton: its findings, with the why."""
        handler = next(
            c for c in self.node.children if c.node.id.startswith("Custom::CDKBucketDeployment")
        )
        why = (
            "CDK's BucketDeployment upload handler (a CDK-maintained singleton run once per deploy): "
        )
        acknowledge(
            handler, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            why + "it writes its own logs with the AWS basic execution policy, which CDK attaches.",
        )
        for finding in (
            "Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*",
            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
        ):
            acknowledge(
                handler, f"AwsSolutions-IAM5[{finding}]",
                why + "read-only access to the CDK bootstrap assets bucket, where the zipped SPA is staged.",
            )
        for finding in ("Action::s3:Abort*", "Action::s3:DeleteObject*", f"Resource::<{self._site_bucket_id}.Arn>/*"):
            acknowledge(
                handler, f"AwsSolutions-IAM5[{finding}]",
                why + "it replaces the SPA's objects in the site bucket (prune deletes stale files).",
            )
        acknowledge(
            handler, "AwsSolutions-IAM5[Resource::*]",
            why + "cloudfront:CreateInvalidation/GetInvalidation support no resource-level permission.",
        )
        acknowledge(
            handler, "AwsSolutions-L1",
            why + "its runtime is chosen and updated by aws-cdk-lib, not by this app.",
        )
