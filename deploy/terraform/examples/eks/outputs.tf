output "role_arn" {
  description = "Annotate the agent's ServiceAccount with it (eks.amazonaws.com/role-arn)."
  value       = module.kubeship.role_arn
}

output "log_group_arns" {
  description = "Log groups the agent writes to."
  value       = module.kubeship.log_group_arns
}

output "alerts_topic_arn" {
  description = "SNS topic of the error-rate alarm."
  value       = module.kubeship.alerts_topic_arn
}
