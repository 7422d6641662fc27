# kubeship's AWS side for one EKS cluster: the agent's IAM role (IRSA and/or EKS Pod
# Identity) with a least-privilege policy, its log groups, saved Logs Insights queries,
# an error-rate alarm to an SNS topic, and optionally an AMP workspace.

locals {
  log_groups  = coalesce(var.log_groups, ["/aws/containerinsights/${var.cluster_name}/application"])
  create_role = var.oidc_provider_arn != null || var.pod_identity
  # The issuer's host and path, as IRSA's condition keys name it.
  oidc_issuer     = var.oidc_provider_arn == null ? "" : element(split("oidc-provider/", var.oidc_provider_arn), 1)
  amp_workspace   = var.create_amp_workspace ? aws_prometheus_workspace.this[0].arn : var.amp_workspace_arn
  service_account = "system:serviceaccount:${var.namespace}:${var.service_account}"
  name            = "kubeship-${var.cluster_name}"
  alarm_namespace = "kubeship/${var.cluster_name}"
  alarm_log_group = local.log_groups[0]
}

resource "aws_cloudwatch_log_group" "app" {
  for_each = toset(local.log_groups)

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_prometheus_workspace" "this" {
  count = var.create_amp_workspace ? 1 : 0

  alias = local.name
  tags  = var.tags
}
