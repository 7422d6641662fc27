# Saved CloudWatch Logs Insights queries over the agent's records (DESIGN.md "Record
# format": log, stream, time, kubernetes.pod_name, .namespace_name, .container_name, ...),
# in the console under Logs Insights > Queries > kubeship/<cluster>/.

locals {
  queries = {
    "errors-by-container" = <<-EOT
      fields @timestamp, kubernetes.namespace_name, kubernetes.container_name, log
      | filter log like /(?i)\b(error|fatal|panic)\b/
      | stats count(*) as errors by kubernetes.namespace_name, kubernetes.container_name
      | sort errors desc
      | limit 50
    EOT
    "top-talkers" = <<-EOT
      stats count(*) as records, sum(strlen(log)) as log_bytes by kubernetes.namespace_name, kubernetes.pod_name, kubernetes.container_name
      | sort log_bytes desc
      | limit 25
    EOT
    # Replace NAMESPACE and POD.
    "pod-recent-logs" = <<-EOT
      fields @timestamp, kubernetes.container_name, stream, log
      | filter kubernetes.namespace_name = "NAMESPACE" and kubernetes.pod_name = "POD"
      | sort @timestamp desc
      | limit 200
    EOT
    # Multiline records (logs.multiline java / python / go) keep a trace in one record.
    "exceptions" = <<-EOT
      fields @timestamp, kubernetes.namespace_name, kubernetes.pod_name, kubernetes.container_name, log
      | filter log like /Exception|Traceback \(most recent call last\)|panic: |goroutine \d+ \[/
      | sort @timestamp desc
      | limit 100
    EOT
  }
}

resource "aws_cloudwatch_query_definition" "this" {
  for_each = local.queries

  name            = "kubeship/${var.cluster_name}/${each.key}"
  log_group_names = [for g in aws_cloudwatch_log_group.app : g.name]
  query_string    = each.value
}
