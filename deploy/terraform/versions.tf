terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_eks_pod_identity_association
      version = ">= 5.40.0"
    }
  }
}
