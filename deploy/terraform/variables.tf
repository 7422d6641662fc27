variable "cluster_name" {
  description = "Name of the EKS cluster: {cluster} in the agent's log group names (CLUSTER_NAME)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$", var.cluster_name))
    error_message = "An EKS cluster name: 1-100 letters, digits, '-' or '_'."
  }
}

variable "namespace" {
  description = "Namespace of the agent's ServiceAccount (deploy/kustomize: kubeship)."
  type        = string
  default     = "kubeship"
}

variable "service_account" {
  description = "Name of the agent's ServiceAccount (deploy/kustomize and a Helm release named kubeship: kubeship)."
  type        = string
  default     = "kubeship"
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider: the role trusts it for IRSA. null: no IRSA trust."
  type        = string
  default     = null
}

variable "pod_identity" {
  description = "Trust EKS Pod Identity and associate the role with the ServiceAccount (needs the eks-pod-identity-agent add-on)."
  type        = bool
  default     = false
}

variable "log_groups" {
  description = "Log groups the agent writes to, created here and the only ones its policy allows. null: the agent's default group, /aws/containerinsights/<cluster_name>/application."
  type        = list(string)
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the log groups, in days (a value CloudWatch Logs accepts)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "Not a retention CloudWatch Logs accepts."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the log groups and the SNS topic; its key policy must let logs.<region>.amazonaws.com and cloudwatch.amazonaws.com use it. null: log groups with CloudWatch's own encryption, SNS unencrypted (CloudWatch alarms cannot publish to a topic under the AWS-managed aws/sns key)."
  type        = string
  default     = null
}

variable "create_amp_workspace" {
  description = "Create an Amazon Managed Service for Prometheus workspace for the metrics pipeline (remote write), and allow aps:RemoteWrite on it."
  type        = bool
  default     = false
}

variable "amp_workspace_arn" {
  description = "An existing AMP workspace to allow aps:RemoteWrite on (instead of create_amp_workspace)."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alert topic (each confirms by mail)."
  type        = list(string)
  default     = []
}

variable "alert_https_endpoints" {
  description = "HTTPS endpoints subscribed to the alert topic (e.g. an incident tool's SNS webhook)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for u in var.alert_https_endpoints : startswith(u, "https://")])
    error_message = "Endpoints must be https:// URLs."
  }
}

variable "error_filter_pattern" {
  description = "Metric filter pattern counting application error records (the agent's record JSON: log, stream, kubernetes.*). Records shipped with output.event: log are plain text: use a text pattern then."
  type        = string
  default     = "{ $.log = %ERROR|Error|error|FATAL|Fatal|fatal|panic:% }"
}

variable "error_alarm_threshold" {
  description = "Application error records per error_alarm_period_seconds above which the alarm fires."
  type        = number
  default     = 100
}

variable "error_alarm_period_seconds" {
  description = "Period of the error alarm, in seconds (60 or a multiple)."
  type        = number
  default     = 300
}

variable "error_alarm_evaluation_periods" {
  description = "Consecutive periods above the threshold before the alarm fires."
  type        = number
  default     = 2
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
