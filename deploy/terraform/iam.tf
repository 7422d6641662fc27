# Who may assume the role: the agent's ServiceAccount through the cluster's OIDC
# provider (IRSA), and/or the EKS Pod Identity agent.
data "aws_iam_policy_document" "trust" {
  count = local.create_role ? 1 : 0

  dynamic "statement" {
    for_each = var.oidc_provider_arn == null ? [] : [var.oidc_provider_arn]
    content {
      sid     = "Irsa"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = [local.service_account]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.pod_identity ? [1] : []
    content {
      sid     = "PodIdentity"
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }
}

# What the agent may do: create streams in and put events to its own log groups (and
# create the groups and set their retention, for output.cloudwatch.create_group), and
# remote-write to the AMP workspace when there is one. Nothing else, nowhere else.
data "aws_iam_policy_document" "agent" {
  statement {
    sid = "LogGroups"
    actions = [
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:PutRetentionPolicy",
    ]
    resources = flatten([for g in aws_cloudwatch_log_group.app : [g.arn, "${g.arn}:*"]])
  }

  statement {
    sid       = "LogEvents"
    actions   = ["logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.app : "${g.arn}:log-stream:*"]
  }

  dynamic "statement" {
    for_each = local.amp_workspace == null ? [] : [local.amp_workspace]
    content {
      sid       = "RemoteWrite"
      actions   = ["aps:RemoteWrite"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role" "agent" {
  count = local.create_role ? 1 : 0

  name               = local.name
  description        = "kubeship agent of EKS cluster ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.trust[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "agent" {
  count = local.create_role ? 1 : 0

  name   = "kubeship"
  role   = aws_iam_role.agent[0].id
  policy = data.aws_iam_policy_document.agent.json
}

resource "aws_eks_pod_identity_association" "agent" {
  count = var.pod_identity ? 1 : 0

  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.agent[0].arn
  tags            = var.tags
}
