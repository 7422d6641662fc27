output "role_arn" {
  description = "The agent's IAM role (null without IRSA and Pod Identity): with IRSA, the ServiceAccount's eks.amazonaws.com/role-arn (kustomize overlay eks-irsa, Helm aws.irsaRoleArn)."
  value       = local.create_role ? aws_iam_role.agent[0].arn : null
}

output "role_name" {
  description = "The agent's IAM role name (null without IRSA and Pod Identity)."
  value       = local.create_role ? aws_iam_role.agent[0].name : null
}

output "policy_json" {
  description = "The agent's IAM policy document, to attach elsewhere when the module makes no role."
  value       = data.aws_iam_policy_document.agent.json
}

output "log_group_arns" {
  description = "ARNs of the log groups the agent writes to, by name."
  value       = { for name, g in aws_cloudwatch_log_group.app : name => g.arn }
}

output "alerts_topic_arn" {
  description = "SNS topic of the alarms (also for Alertmanager's SNS receiver)."
  value       = aws_sns_topic.alerts.arn
}

output "amp_workspace_arn" {
  description = "AMP workspace the agent may remote-write to (null: none)."
  value       = local.amp_workspace
}

output "amp_remote_write_url" {
  description = "Remote-write URL of the created AMP workspace (null unless create_amp_workspace)."
  value       = var.create_amp_workspace ? "${aws_prometheus_workspace.this[0].prometheus_endpoint}api/v1/remote_write" : null
}

output "query_definition_ids" {
  description = "IDs of the saved Logs Insights queries, by name."
  value       = { for k, q in aws_cloudwatch_query_definition.this : k => q.query_definition_id }
}
