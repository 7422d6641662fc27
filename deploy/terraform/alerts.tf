# Application error rate: a metric filter on the agent's records, an alarm on it, and an
# SNS topic (e-mail and HTTPS subscriptions) for the alarm and for Alertmanager's SNS
# receiver.

resource "aws_sns_topic" "alerts" {
  name              = "${local.name}-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_sns_topic_subscription" "https" {
  for_each = toset(var.alert_https_endpoints)

  topic_arn              = aws_sns_topic.alerts.arn
  protocol               = "https"
  endpoint               = each.value
  endpoint_auto_confirms = false
}

resource "aws_cloudwatch_log_metric_filter" "errors" {
  name           = "${local.name}-application-errors"
  log_group_name = aws_cloudwatch_log_group.app[local.alarm_log_group].name
  pattern        = var.error_filter_pattern

  metric_transformation {
    name      = "ApplicationErrors"
    namespace = local.alarm_namespace
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${local.name}-application-errors"
  alarm_description   = "More than ${var.error_alarm_threshold} application error records per ${var.error_alarm_period_seconds} s in ${local.alarm_log_group} (Logs Insights: kubeship/${var.cluster_name}/errors-by-container)."
  namespace           = local.alarm_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.errors.metric_transformation[0].name
  statistic           = "Sum"
  period              = var.error_alarm_period_seconds
  evaluation_periods  = var.error_alarm_evaluation_periods
  threshold           = var.error_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  # No error records means no data points: that is healthy.
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_sns_topic.alerts.arn]
  ok_actions         = [aws_sns_topic.alerts.arn]
  tags               = var.tags
}
