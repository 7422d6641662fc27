# kubeship's AWS side for an existing EKS cluster, then the agent from
# deploy/kustomize/overlays/eks-irsa (or the Helm chart with aws.irsaRoleArn = the
# role_arn output); with -var create_amp_workspace=true also an AMP workspace for
# overlay amp (or Helm metrics.remoteWrite.url = the amp_remote_write_url output).
#
#   terraform init && terraform apply -var cluster_name=prod -var region=eu-west-1

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0"
    }
  }
}

provider "aws" {
  region = var.region
}

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

# The cluster's IAM OIDC provider (eksctl utils associate-iam-oidc-provider, or the
# terraform-aws-modules/eks module, makes it).
data "aws_iam_openid_connect_provider" "this" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

module "kubeship" {
  source = "../.."

  cluster_name         = data.aws_eks_cluster.this.name
  oidc_provider_arn    = data.aws_iam_openid_connect_provider.this.arn
  pod_identity         = var.pod_identity
  create_amp_workspace = var.create_amp_workspace
  alert_emails         = var.alert_emails
  tags                 = var.tags
}
