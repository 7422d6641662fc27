variable "cluster_name" {
  description = "Name of the existing EKS cluster."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster (AWS_REGION of the agent)."
  type        = string
}

variable "pod_identity" {
  description = "Also associate the role with the agent's ServiceAccount through EKS Pod Identity."
  type        = bool
  default     = false
}

variable "create_amp_workspace" {
  description = "Create an AMP workspace for the metrics pipeline and allow the agent's role aps:RemoteWrite on it."
  type        = bool
  default     = false
}

variable "alert_emails" {
  description = "E-mail addresses for the error-rate alarm."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = { "app.kubernetes.io/part-of" = "kubeship" }
}
