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

output "amp_remote_write_url" {
  description = "The AMP workspace's remote-write URL (null without create_amp_workspace): AMP_REMOTE_WRITE_URL of overlay amp, Helm metrics.remoteWrite.url."
  value       = module.kubeship.amp_remote_write_url
}
